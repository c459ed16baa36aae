"""vlmbench: benchmark quantized vision-language models against their FP16 baseline on COCO captioning."""
__version__ = "0.1.0"
# The distribution's name on an index (pyproject.toml): pytest plugins are published as pytest-<name>, and
# `vlmbench` on PyPI is another project. The import name and the `vlmbench-report` command stay `vlmbench`.
DISTRIBUTION = "pytest-vlmbench"
