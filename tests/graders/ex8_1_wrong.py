"""Exercise 8.1, plausible but wrong: the GPU request and toleration are written whatever ``gpus`` is, so a
CPU overlay asks for ``nvidia.com/gpu: 0`` and tolerates GPU taints (it may be scheduled onto, and block, a
GPU node)."""

from ch08_production.solutions import ex8_1_k8s_overlay as ref

OverlaySpec = ref.OverlaySpec


def write_overlay(out_dir, spec):
    out = ref.write_overlay(out_dir, ref.OverlaySpec(**{**vars(spec), "gpus": max(spec.gpus, 1)}))
    if spec.gpus == 0:
        text = (out / "deployment.yaml").read_text().replace("nvidia.com/gpu: 1", "nvidia.com/gpu: 0")
        (out / "deployment.yaml").write_text(text)
    return out
