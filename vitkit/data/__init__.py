"""Data: decoding images, finding datasets on disk, the embedded MNIST-5k set, augmentation, batching."""
