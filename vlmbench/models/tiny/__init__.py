"""In-code processors and config.json contents of each supported family (vlmbench.models.families).

Why it exists: tests and the offline runs need a model of every family without files or network: each
module here builds that family's processor in code (`build_processor()`), the config.json of a shrunk
model (`tiny_config_dict(processor)`) and the real-size shape of one named checkpoint
(`real_config_dict(processor)`), both loaded with random weights through transformers' auto classes.
"""
