"""PYNQ board runtime: overlay bundles, the DMA accelerator driver, CIFAR-10, benchmarks.

This package is the dependency-free end of the pipeline: it needs only the standard library, numpy and (for
hardware or the emulated overlay) ``pynq``. It never imports TensorFlow or hls4ml, so it runs on the board's ARM
core (Python 3.10, numpy 1.x). The host stages (``training``, ``hls_build``) may import its small shared pieces
(the bundle manifest, the fixed-point codec, the CIFAR-10 loader); it never imports them.
"""

__version__ = "0.1.0"
