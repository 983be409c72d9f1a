"""Training: CIFAR ResNets in Keras + QKeras, quantization-aware training, distillation, compression.

Import ``training.keras_compat`` (done by every module here that needs Keras) before TensorFlow, QKeras or hls4ml.
"""
