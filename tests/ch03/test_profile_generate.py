"""3.6 tools: torch.profiler around generate writes a trace and ranks operators (tiny random model)."""

from __future__ import annotations

import json

import torch

from ch03_env.profile_generate import profile_generate, top_ops


def test_profiler_records_generate_and_exports_a_chrome_trace(tiny_hf_model, tmp_path):
    model, _ = tiny_hf_model
    ids = torch.randint(3, 256, (1, 8))
    prof, seconds = profile_generate(model, ids, new_tokens=3, device=torch.device("cpu"))
    assert seconds > 0
    rows = top_ops(prof, 5, torch.device("cpu"))
    assert len(rows) == 5 and rows[0]["self ms"] >= rows[-1]["self ms"]
    names = {e.key for e in prof.key_averages()}
    assert "generate" in names and any(n in names for n in ("aten::mm", "aten::addmm", "aten::linear"))
    trace = tmp_path / "trace.json"
    prof.export_chrome_trace(str(trace))
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e.get("name") == "generate" for e in events)
