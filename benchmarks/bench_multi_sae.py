"""Many SAEs from one forward pass on the embedded SmolLM2-135M: tokens/s of N SAEs trained by one
``WeightedMultiSAETrainingRunner`` against the same N SAEs trained by N separate ``WeightedSAETrainingRunner``
runs (each with its own model forward), in one run on the same model, corpus, hook and budget.

Each SAE is a weighted TopK SAE with its own α (0, 0.5, 1, …: an α sweep), Γ estimated over
``--weighting-tokens`` tokens, as ``wsae-lens train`` would run it; b_dec starts at 0 on both sides (its
16,384-token set-up pass would otherwise be paid N times by the separate runs and inflate the ratio). The
times are end to end (Γ pass included, model loading excluded). Throughput counts every SAE's training tokens:

    tokens/s = N × training_tokens / wall seconds,    speed-up = separate wall / one-pass wall.

The language-model forward is shared by the N SAEs of the one-pass run, so the speed-up approaches N when the
forward dominates (deep hooks, small SAEs, GPUs) and falls towards 1 when the SAE steps dominate.

    .venv/bin/python benchmarks/bench_multi_sae.py            # about 3 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from wsae_lens import WeightedSAETrainingRunner
from wsae_lens.multi import WeightedMultiSAETrainingRunner, multi_config_from_dict
from wsae_lens.pipeline.embedded import EMBEDDED_DATASET_NAME, EMBEDDED_MODEL_NAME
from wsae_lens.pipeline.loading import load_model_and_dataset


def runner_fields(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    return {
        "model_name": EMBEDDED_MODEL_NAME, "dataset_path": EMBEDDED_DATASET_NAME, "hook_name": args.hook,
        "context_size": 128, "prepend_bos": True, "exclude_special_tokens": True, "streaming": False,
        "training_tokens": args.training_tokens, "train_batch_size_tokens": args.batch,
        "store_batch_size_prompts": 8, "n_batches_in_buffer": 8, "lr": 3e-4, "seed": 0,
        "dead_feature_window": 50, "lr_warm_up_steps": 0,
        "logger": {"log_to_wandb": False}, "n_checkpoints": 0, "checkpoint_path": str(out / "checkpoints"),
        "output_path": str(out / "output"),
    }


def sae_fields(args: argparse.Namespace, index: int) -> dict[str, Any]:
    alpha = index / 2
    weighting = {"weighting": "uniform"} if alpha == 0 else {
        "weighting": "variance", "weighting_alpha": alpha, "weighting_tokens": args.weighting_tokens}
    return {"architecture": "weighted_topk", "d_in": 576, "d_sae": args.d_sae, "k": args.k, **weighting}


def separate_runs(args: argparse.Namespace, model: Any, dataset: Any) -> float:
    """Wall seconds of N single-SAE runs, one after the other."""
    from sae_lens import LanguageModelSAERunnerConfig

    total = 0.0
    for index in range(args.n_saes):
        with tempfile.TemporaryDirectory() as tmp:
            fields = runner_fields(args, Path(tmp))
            fields["is_dataset_tokenized"] = True
            cfg = LanguageModelSAERunnerConfig.from_dict({**fields, "sae": sae_fields(args, index)})
            runner = WeightedSAETrainingRunner(cfg, override_model=model, override_dataset=dataset,
                                               init_b_dec_from_data=False)
            start = time.perf_counter()
            runner.run()
            total += time.perf_counter() - start
    return total


def one_pass(args: argparse.Namespace, model: Any, dataset: Any) -> float:
    """Wall seconds of one multi-SAE run training the same N SAEs."""
    with tempfile.TemporaryDirectory() as tmp:
        fields = runner_fields(args, Path(tmp))
        fields["init_b_dec_from_data"] = False
        fields["saes"] = {f"alpha_{i / 2:g}": sae_fields(args, i) for i in range(args.n_saes)}
        runner = WeightedMultiSAETrainingRunner(multi_config_from_dict(fields), override_model=model,
                                                override_dataset=dataset)
        start = time.perf_counter()
        runner.run()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-saes", type=int, default=4)
    parser.add_argument("--hook", default="blocks.15.hook_resid_post")
    parser.add_argument("--training-tokens", type=int, default=32_768, help="training tokens per SAE")
    parser.add_argument("--weighting-tokens", type=int, default=8_192)
    parser.add_argument("--batch", type=int, default=1_024, help="train_batch_size_tokens")
    parser.add_argument("--d-sae", type=int, default=2_304)
    parser.add_argument("--k", type=int, default=32)
    args = parser.parse_args()
    model, dataset = load_model_and_dataset({"model_name": EMBEDDED_MODEL_NAME, "dataset_path": EMBEDDED_DATASET_NAME,
                                             "context_size": 128})
    tokens = args.n_saes * args.training_tokens
    separate = separate_runs(args, model, dataset)
    shared = one_pass(args, model, dataset)
    print(f"{args.n_saes} weighted TopK SAEs (d_sae {args.d_sae}, k {args.k}) at {args.hook}, "
          f"{args.training_tokens:,} training tokens each, batch {args.batch}, torch threads {torch.get_num_threads()}")
    print(f"  {args.n_saes} separate runs : {separate:7.1f} s  {tokens / separate:8.0f} tokens/s")
    print(f"  one forward pass : {shared:7.1f} s  {tokens / shared:8.0f} tokens/s")
    print(f"  speed-up         : {separate / shared:.2f}x")


if __name__ == "__main__":
    main()
