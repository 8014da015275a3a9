"""Point clouds: the scan type, readers for PLY / S3DIS / ScanNet, and the generated ``indoor-rooms`` set."""
