"""Reading and writing other libraries' ViT weights (timm, Hugging Face, torchvision, JAX)."""
