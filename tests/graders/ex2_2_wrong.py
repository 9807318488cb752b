"""Exercise 2.2, plausible but wrong: it generates first and only then runs the Monitor for as long as the
generation took, so the trace has the right length and a CSV, but none of its samples saw the model work."""

import time
from pathlib import Path

import torch

from ch02_gpu.monitor import Monitor
from ch02_gpu.solutions.ex2_2_monitor_inference import GenerationTrace, plot_trace  # noqa: F401


def monitor_generation(model, tokenizer, prompt, max_new_tokens=32, interval=0.1, csv_path=None):
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id)
    seconds = time.perf_counter() - t0
    mon = Monitor(interval=interval, csv_path=Path(csv_path) if csv_path else None)
    with mon:
        time.sleep(max(seconds, 3 * interval))
    new = out[0, ids.shape[1]:]
    return GenerationTrace(tokenizer.decode(new, skip_special_tokens=True), int(new.numel()), seconds,
                           mon.sampler.source, mon.samples)
