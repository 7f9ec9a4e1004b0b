"""PyTorch eager reference for `ferrum bench train`: the same LLaMA (Hugging Face
`LlamaForCausalLM` built from a Ferrum subnet config's `model` section), the same batch and
micro-batch, AdamW with global gradient clipping, on the CPU with a fixed thread count.

    ferrum config show --preset small > small.json
    python scripts/torch_train_bench.py small.json --threads 2 --steps 8 [--attention eager]

Prints one JSON line: tokens/s over the steps after the first (tokens the model predicts,
t - 1 per sequence, as `ferrum bench train` counts them), mean ms per step, torch version.
Needs torch and transformers (scripts/check-hf-export makes such a venv).
"""

import argparse
import json
import time

import torch
import transformers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--attention", default="sdpa", choices=["sdpa", "eager"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    c = json.load(open(a.config))
    m, t, d = c["model"], c["training"], c["data"]
    cfg = transformers.LlamaConfig(
        vocab_size=m["vocab_size"],
        hidden_size=m["hidden_size"],
        intermediate_size=m["intermediate_size"],
        num_hidden_layers=m["num_layers"],
        num_attention_heads=m["num_heads"],
        num_key_value_heads=m["num_kv_heads"],
        rope_theta=m["rope_theta"],
        rms_norm_eps=m["norm_eps"],
        tie_word_embeddings=m["tie_embeddings"],
        max_position_embeddings=d["sequence_length"],
        attn_implementation=a.attention,
    )
    model = transformers.LlamaForCausalLM(cfg)
    model.train()
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=t["learning_rate"],
        betas=(t["adam_beta1"], t["adam_beta2"]),
        eps=t["adam_eps"],
        weight_decay=t["weight_decay"],
    )
    batch, micro, seq = t["batch_size"], t["micro_batch_size"], d["sequence_length"]
    data = torch.randint(0, m["vocab_size"], (batch, seq))
    times = []
    for _ in range(a.steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        for i in range(0, batch, micro):
            x = data[i : i + micro]
            out = model(input_ids=x, labels=x)
            (out.loss * x.shape[0] / batch).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"])
        opt.step()
        times.append(time.perf_counter() - start)
    timed = times[1:]
    tokens = batch * (seq - 1) * len(timed)
    print(
        json.dumps(
            {
                "tokens_per_sec": tokens / sum(timed),
                "mean_step_ms": 1000 * sum(timed) / len(timed),
                "threads": a.threads,
                "attention": a.attention,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
