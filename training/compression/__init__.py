"""Deep Compression (Han et al., ICLR 2016) for the CIFAR ResNets: prune, share weights, Huffman-code, report.

Modules: ``prune`` (magnitude masks kept through retraining), ``share`` (1-D k-means, centroid fine-tuning),
``huffman`` (Huffman codes, relative sparse indices), ``container`` (the ``.dcw`` file writer; the reader is
``board.compressed_weights``), ``report`` (per-layer table and rates), ``pipeline`` (the whole run). What hls4ml
does with the zeros is hls_build's (``hls_build.compression_report``). See ``training/compression/README.md``.
"""
