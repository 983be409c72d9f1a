"""Deep Compression (Han et al., ICLR 2016) for the CIFAR ResNets: prune, share weights, Huffman-code, report.

Modules: ``prune`` (magnitude masks kept through retraining), ``share`` (1-D k-means, centroid fine-tuning),
``huffman`` (Huffman codes, relative sparse indices), ``container`` (the ``.dcw`` file writer; the reader is
``board.compressed_weights``), ``report`` (per-layer table and rates), ``hardware`` (what hls4ml does with the
zeros), ``pipeline`` (the whole run). See ``training/compression/README.md``.
"""
