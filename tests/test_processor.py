"""The real Qwen2.5-VL processor (files in ../shared) with real COCO images, batched and left-padded."""

from vlmbench.config import load_config
from vlmbench.data.sources import ImageRow
from vlmbench.models.loading import build_processor


def test_real_processor_batches_real_images_left_padded(qwen_files, coco_sample, write_config):
    cfg = load_config(write_config({"model": {"processor": str(qwen_files)}, "inference": {"img_size": 224}}))
    processor = build_processor(cfg)
    assert processor.tokenizer.padding_side == "left"
    from vlmbench.run.runner import Captioner

    class NoModel:
        device = "cpu"
    captioner = Captioner(NoModel(), processor, cfg, "cpu")
    rows = [ImageRow(139, "a", str(coco_sample / "val2017" / "000000000139.jpg"), ()),
            ImageRow(802, "b", str(coco_sample / "val2017" / "000000000802.jpg"), ())]
    batch = captioner.prepare(0, rows)
    inputs = batch.inputs
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    per_image = (224 // 28) ** 2  # one language-model token per 28x28 pixels
    assert inputs["input_ids"].shape[0] == 2
    assert ((inputs["input_ids"] == image_token).sum(dim=1) == per_image).all()
    assert inputs["image_grid_thw"].tolist() == [[1, 16, 16], [1, 16, 16]]
    # a longer prompt in the same batch pads the other one on the left
    longer = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "A much longer instruction, "
                                                                                  "with many more words in it."}]}],
        add_generation_prompt=True, tokenize=False)
    long = processor(text=[captioner.prompt_text, longer],
                     images=[b.image for b in batch.ok], padding=True, return_tensors="pt")
    assert long["attention_mask"][0, 0] == 0 and long["attention_mask"][0, -1] == 1
    assert long["input_ids"][0, -1] == long["input_ids"][1, -1]


def test_seed_image_size_gives_1369_tokens(qwen_files, coco_sample, write_config):
    cfg = load_config(write_config({"model": {"processor": str(qwen_files)}, "inference": {"img_size": 1024}}))
    from vlmbench.run.runner import Captioner

    class NoModel:
        device = "cpu"
    captioner = Captioner(NoModel(), build_processor(cfg), cfg, "cpu")
    batch = captioner.prepare(0, [ImageRow(139, "a", str(coco_sample / "val2017" / "000000000139.jpg"), ())])
    image_token = captioner.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((batch.inputs["input_ids"] == image_token).sum()) == 1369


def test_micro_batch_images_decode_in_parallel_in_order_with_failures_kept(qwen_files, coco_sample, write_config,
                                                                           tmp_path, monkeypatch):
    import threading
    from vlmbench.run import runner
    from vlmbench.run.runner import Captioner

    class NoModel:
        device = "cpu"
    names = ["000000000139.jpg", "000000000802.jpg", "000000011813.jpg", "missing.jpg", "000000012280.jpg"]
    rows = [ImageRow(i, n, str(coco_sample / "val2017" / n), ()) for i, n in enumerate(names)]
    threads = set()
    real_load = runner.load_image

    def recording_load(*args, **kwargs):
        threads.add(threading.current_thread().name)
        return real_load(*args, **kwargs)
    monkeypatch.setattr(runner, "load_image", recording_load)
    prepared = {}
    for workers in (1, 4):
        cfg = load_config(write_config({"model": {"processor": str(qwen_files)},
                                        "inference": {"img_size": 112, "decode_workers": workers}}))
        threads.clear()
        batch = Captioner(NoModel(), build_processor(cfg), cfg, "cpu").prepare(0, rows)
        prepared[workers] = batch, set(threads)
    serial, parallel = prepared[1][0], prepared[4][0]
    assert [x.row.image_id for x in parallel.ok] == [0, 1, 2, 4] == [x.row.image_id for x in serial.ok]
    assert [x.row.image_id for x in parallel.failed] == [3] and parallel.failed[0].error.startswith("unavailable")
    assert (parallel.inputs["pixel_values"] == serial.inputs["pixel_values"]).all()
    assert len(prepared[1][1]) == 1 and len(prepared[4][1]) > 1
    assert all(name.startswith("vlmbench-decode") for name in prepared[4][1])
