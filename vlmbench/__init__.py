"""vlmbench: benchmark quantized vision-language models against their FP16 baseline on COCO captioning."""
__version__ = "0.1.0"
