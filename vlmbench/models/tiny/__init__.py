"""Processors built in code and tiny / real-size configs for model families other than Qwen2.5-VL."""
