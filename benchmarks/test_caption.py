"""The benchmark suite itself: one case per (variant, chunk), e.g. `test_caption[int8_vit-batch3]`.

Run it with `pytest benchmarks` (seed experiment) or `pytest benchmarks --vlm-config configs/smoke.yaml`
(offline). Fixtures come from the vlmbench pytest plugin (vlmbench/plugin.py). pytest-benchmark times
the captioning pass alone: warm-up (compilation included) runs before it, the batch-1 latency runs and
the CSV write after it.
"""


def test_caption(vlm_session, vlm_variant, vlm_chunk, benchmark):
    vlm_session.warm_up(vlm_variant, vlm_chunk)
    result = benchmark.pedantic(vlm_session.caption_chunk, args=(vlm_variant, vlm_chunk), rounds=1, iterations=1)
    rows = vlm_session.finish_chunk(vlm_variant, vlm_chunk, result)
    first = rows[0]
    benchmark.extra_info.update({k: first[k] for k in ("chunk_images_ok", "chunk_throughput_img_s",
                                                       "chunk_energy_j_per_image", "chunk_peak_alloc_mib",
                                                       "chunk_idle_share", "engine")})
    expected = [row.image_id for row in vlm_session.chunks[vlm_chunk]]
    assert [row["image_id"] for row in rows] == expected
    captioned = [row for row in rows if row["status"] == "ok"]
    assert captioned, f"no image of chunk {vlm_chunk} could be captioned: {rows[0]['error']}"
    assert all(row["generated_tokens"] <= vlm_session.cfg.inference.max_new_tokens for row in captioned)
