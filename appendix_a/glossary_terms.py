"""A.5 glossary data: (English, 中文, category, aliases, definition, chapter). Printed by appendix_a.glossary."""

from __future__ import annotations

LLM, GPU, OPT = "A.5.1 LLM", "A.5.2 GPU", "A.5.3 inference optimisation"

# (en, zh, category, aliases, definition, where the book treats it)
TERMS: tuple[tuple[str, str, str, tuple[str, ...], str, str], ...] = (
    # ---------------------------------------------------------------- A.5.1 LLM terms
    ("LLM", "大语言模型", LLM, ("large language model",), "a Transformer decoder trained to predict the next token", "1"),
    ("Transformer", "Transformer架构", LLM, (), "layers of attention and feed-forward blocks with residuals", "4.1"),
    ("token", "词元", LLM, (), "the unit a model reads and writes; a word piece from the tokenizer", "3.5"),
    ("tokenizer", "分词器", LLM, (), "turns text into token ids and back", "3.5"),
    ("prefill", "预填充", LLM, (), "the forward pass over the whole prompt that fills the KV cache", "4.2, 5.3"),
    ("decode", "解码", LLM, ("decoding",), "generating one token per forward pass after the prefill", "4.2, 9.3"),
    ("autoregressive generation", "自回归生成", LLM, ("autoregressive",), "each new token is fed back as input", "4.1"),
    ("attention", "注意力机制", LLM, ("self-attention",), "softmax(QK^T/sqrt(d))V over the sequence", "4.1"),
    ("multi-head attention", "多头注意力", LLM, ("MHA",), "attention with one K/V head per query head", "4.4"),
    ("grouped-query attention", "分组查询注意力", LLM, ("GQA",), "several query heads share one K/V head", "4.4"),
    ("multi-query attention", "多查询注意力", LLM, ("MQA",), "all query heads share a single K/V head", "4.4"),
    ("KV cache", "KV缓存", LLM, ("KV", "key-value cache"), "the keys and values of past tokens, kept so decode "
     "does not recompute them", "4"),
    ("context length", "上下文长度", LLM, ("max_model_len", "context window"), "the most tokens (prompt + output) "
     "a sequence may hold", "4.5"),
    ("RoPE", "旋转位置编码", LLM, ("rotary position embedding",), "positions encoded by rotating Q and K", "4.1"),
    ("mixture of experts", "混合专家模型", LLM, ("MoE",), "each token runs through a few of many expert FFNs", "9.1"),
    ("multimodal model", "多模态模型", LLM, ("multimodal",), "a model that takes images (or audio) besides text", "9.2"),
    ("perplexity", "困惑度", LLM, ("PPL",), "exp of the mean negative log-likelihood: quality gate for quantization", "6"),
    ("greedy decoding", "贪心解码", LLM, ("greedy",), "always pick the most likely token", "4.3"),
    ("temperature", "温度", LLM, ("sampling temperature",), "divides logits before softmax: lower = more deterministic", "4.3"),
    ("logits", "对数几率", LLM, (), "the model's unnormalised scores over the vocabulary", "4.3"),
    ("embedding", "嵌入", LLM, (), "the vector a token id is mapped to", "4.1"),
    # ---------------------------------------------------------------- A.5.2 GPU terms
    ("GPU", "图形处理器", GPU, ("graphics processing unit",), "a processor of many parallel cores and fast memory", "2"),
    ("CPU", "中央处理器", GPU, (), "the host processor; this repository's always-available tier", "2.1"),
    ("VRAM", "显存", GPU, ("GPU memory", "HBM"), "the accelerator's own memory; holds weights, KV cache, activations", "2.3"),
    ("memory bandwidth", "内存带宽", GPU, ("bandwidth",), "bytes per second memory delivers; bounds decode", "2.5"),
    ("FLOPS", "每秒浮点运算次数", GPU, ("FLOP/s",), "floating-point operations per second", "2.2"),
    ("Tensor Core", "张量核心", GPU, (), "GPU units for small matrix multiplies in low precision", "2.2"),
    ("CUDA", "CUDA", GPU, (), "NVIDIA's GPU programming platform and runtime", "2.2, 3.2"),
    ("streaming multiprocessor", "流式多处理器", GPU, ("SM",), "the GPU's core cluster that runs thread blocks", "2.2"),
    ("roofline model", "屋顶线模型", GPU, ("roofline",), "attainable speed = min(peak compute, bandwidth x intensity)", "2.5"),
    ("arithmetic intensity", "算术强度", GPU, (), "FLOPs per byte moved", "2.5"),
    ("model bandwidth utilisation", "内存带宽利用率", GPU, ("MBU",), "achieved bytes/s over peak bytes/s", "2.5, 9.3"),
    ("model FLOPs utilisation", "算力利用率", GPU, ("MFU",), "achieved FLOPs over peak FLOPs", "2.5"),
    ("tensor parallelism", "张量并行", GPU, ("TP",), "each layer's matrices split over several GPUs", "8.2"),
    ("pipeline parallelism", "流水线并行", GPU, ("PP",), "consecutive layers on different GPUs", "8.2"),
    ("NVLink", "NVLink高速互联", GPU, (), "NVIDIA's GPU-to-GPU interconnect", "2.6"),
    ("SIMD", "单指令多数据", GPU, ("AVX2", "AVX-512"), "CPU vector instructions; the C++ kernels' fast paths", "9.5"),
    ("out of memory", "显存不足", GPU, ("OOM",), "an allocation the device cannot satisfy", "B.1.2"),
    ("bfloat16", "bf16格式", GPU, ("bf16",), "16-bit float with fp32's exponent range", "2.3, 6.1"),
    ("float16", "fp16格式", GPU, ("fp16",), "IEEE half precision", "6.1"),
    ("float32", "fp32格式", GPU, ("fp32",), "IEEE single precision; our CPU default", "6.1"),
    # ---------------------------------------------------------------- A.5.3 inference optimisation terms
    ("PagedAttention", "分页注意力", OPT, ("paged attention", "paged KV cache"), "KV cache in fixed-size blocks "
     "addressed through a block table", "4.3"),
    ("continuous batching", "连续批处理", OPT, ("dynamic batching", "in-flight batching", "iteration-level "
     "scheduling"), "requests join and leave the batch at every step", "5.3"),
    ("static batching", "静态批处理", OPT, (), "a batch runs until its longest member ends", "5.2"),
    ("chunked prefill", "分块预填充", OPT, (), "long prompts prefilled in pieces mixed with decode steps", "5.4"),
    ("prefix caching", "前缀缓存", OPT, ("prefix sharing",), "KV blocks of a shared prompt prefix computed once", "4.4, 5.4"),
    ("preemption", "抢占", OPT, (), "evicting a running request's KV blocks when memory runs out", "5.4"),
    ("scheduling", "调度", OPT, ("request scheduling", "scheduler"), "deciding which requests run in each step", "5"),
    ("quantization", "量化", OPT, ("quantisation",), "storing weights (or KV) in fewer bits", "6"),
    ("GPTQ", "GPTQ量化", OPT, (), "post-training quantization that corrects error with second-order information", "6.2"),
    ("AWQ", "激活感知权重量化", OPT, ("activation-aware weight quantization",), "scales salient channels before "
     "rounding", "6.2"),
    ("INT8", "8位整数", OPT, ("W8A8",), "8-bit integers for weights and/or activations", "6.3"),
    ("INT4", "4位整数", OPT, ("W4A16",), "4-bit integer weights, usually in groups with scales", "6.3"),
    ("GGUF", "GGUF格式", OPT, (), "llama.cpp's single-file model format", "6.3, 9.6"),
    ("speculative decoding", "投机采样", OPT, ("speculative sampling",), "a cheap draft proposes tokens the target "
     "verifies in one pass", "7"),
    ("draft model", "草稿模型", OPT, (), "the small model that proposes tokens", "7.4"),
    ("prompt lookup decoding", "提示查找解码", OPT, ("prompt lookup",), "drafts copied from n-grams of the prompt", "7.3"),
    ("distillation", "知识蒸馏", OPT, (), "training a small model on a large model's outputs", "7.4"),
    ("FlashAttention", "Flash注意力", OPT, ("Flash Attention",), "tiled attention that never writes the score matrix", "9.4"),
    ("torch.compile", "Torch编译", OPT, ("Torch Compile",), "PyTorch's graph capture and kernel generation", "9.3"),
    ("operator fusion", "算子融合", OPT, ("kernel fusion",), "several ops in one kernel to save memory traffic", "9.5"),
    ("custom operator", "自定义算子", OPT, ("custom kernel",), "a hand-written kernel registered with the framework", "9.5"),
    ("time to first token", "首词元延迟", OPT, ("TTFT",), "request arrival to its first output token", "5, 8.4"),
    ("time per output token", "每输出词元时间", OPT, ("TPOT", "ITL", "inter-token latency"), "mean gap between "
     "output tokens", "5, 8.4"),
    ("throughput", "吞吐量", OPT, ("tokens/s", "tok/s"), "tokens produced per second over all requests", "5"),
    ("latency", "延迟", OPT, (), "time a request waits for its answer", "5"),
    ("service-level objective", "服务等级目标", OPT, ("SLO",), "a latency target such as p90 TTFT <= 2 s", "5.6, 8.5"),
    ("goodput", "有效吞吐", OPT, (), "throughput counting only requests that met the SLO", "8.5"),
    ("autoscaling", "自动扩缩容", OPT, (), "adding and removing replicas with the load", "8.6"),
    ("return on investment", "投资回报率", OPT, ("ROI",), "(benefit - cost) / cost", "1, 8.7, C.5"),
    ("vLLM", "vLLM推理引擎", OPT, (), "the open-source engine built on PagedAttention", "3.3, A.1.1"),
    ("Text Generation Inference", "TGI推理服务", OPT, ("TGI",), "Hugging Face's inference server", "A.1.2"),
    ("TensorRT-LLM", "TensorRT-LLM引擎", OPT, (), "NVIDIA's compiled inference engine", "A.1.3"),
    ("llama.cpp", "llama.cpp引擎", OPT, (), "the C/C++ engine for GGUF models on CPUs and GPUs", "9.6"),
    ("structured outputs", "结构化输出", OPT, ("JSON", "JSON schema", "guided decoding"), "decoding under a grammar "
     "(a JSON schema, a regex, a choice): a token mask keeps the output parseable", "8.1"),
    ("Kubernetes", "Kubernetes容器编排", OPT, ("K8s",), "container orchestration the serving stack deploys to", "8.3"),
    ("Prometheus", "Prometheus监控", OPT, (), "the metrics database that scrapes /metrics", "8.4"),
    ("Grafana", "Grafana仪表盘", OPT, (), "dashboards over Prometheus queries", "8.4"),
    ("Docker", "Docker容器", OPT, (), "container images and runtime", "3.4"),
    ("OpenAI-compatible API", "OpenAI兼容接口", OPT, (), "/v1/completions and /v1/chat/completions as OpenAI "
     "defines them", "3.3, 8.1"),
)
