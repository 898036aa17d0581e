"""Approximate feature activation (AFA) diagnostics for any SAELens SAE (arXiv 2503.24277).

ε-quasi-orthogonality: for unit feature directions with |d_iᵀd_j| ≤ ε and z = Σ_{i≤h} f_i d_i,

    ‖z‖² / (1 + ε(h−1)) ≤ ‖f‖² ≤ ‖z‖² / (1 − ε(h−1)),

so the dense norm ‖z‖ approximates the sparse code's norm. For an SAE the code is

    f̃ = (f_1 ‖W_dec,1‖, …, f_n ‖W_dec,n‖, ‖b_dec‖):

each activation scaled by the norm of the vector it adds to the reconstruction (1 for SAEs that decode
with ``rescale_acts_by_decoder_norm``), plus the decoder bias as one extra unit feature. Per token:

* ε_LBO = |‖z‖² − ‖f̃‖²| / ((h − 1) ‖f̃‖²), h = number of non-zero entries of f̃ (NaN when h ≤ 1);
* NMSE = ‖z − ẑ‖² / ‖z‖²;
* ratio ‖f̃‖ / ‖z‖: above 1 over-activated, below 1 under-activated.

z is the SAE's input after its own run-time input normalisation (identical to the activation for
``normalize_activations="none"``); ẑ = ``sae.decode(sae.encode(x))`` compared with x in the caller's
space. The ZF plot shows one point per token at (‖z‖, ‖f̃‖) with y = x and the cones
y = x·sqrt(1/(1 ± ε(h−1))) (the upper cone only where ε(h−1) < 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from sae_lens import SAE
from tqdm.auto import tqdm

from wsae_lens.activations import TokenFilter
from wsae_lens.activations.sources import iter_activation_batches

DEFAULT_QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
DEFAULT_CONES: tuple[float, ...] = (0.25, 0.5, 1.0)
"""Values of ε(h−1) whose cones the ZF plot draws (as in the paper)."""


def decoder_scaled_norms(sae: SAE[Any]) -> torch.Tensor:
    """Norm of the vector one unit of each latent's activation adds to x̂ (1 if decode rescales by ‖W_dec,i‖)."""
    if getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):
        return torch.ones(sae.cfg.d_sae, dtype=sae.W_dec.dtype, device=sae.W_dec.device)
    return sae.W_dec.norm(dim=-1)


def approximate_feature_vector(feature_acts: torch.Tensor, decoder_norms: torch.Tensor, b_dec: torch.Tensor) -> torch.Tensor:
    """f̃ = (f_1 ‖W_dec,1‖, …, f_n ‖W_dec,n‖, ‖b_dec‖) per token: [..., d_sae] → [..., d_sae + 1]."""
    bias = torch.linalg.vector_norm(b_dec).expand(*feature_acts.shape[:-1], 1).to(feature_acts.dtype)
    return torch.cat([feature_acts * decoder_norms, bias], dim=-1)


def epsilon_lbo(dense_norm: torch.Tensor, feature_norm: torch.Tensor, n_features: torch.Tensor) -> torch.Tensor:
    """ε_LBO = |‖z‖² − ‖f̃‖²| / ((h − 1) ‖f̃‖²) per token; NaN where h ≤ 1 or ‖f̃‖ = 0 (undefined)."""
    denominator = (n_features.to(feature_norm.dtype) - 1) * feature_norm.square()
    value = (dense_norm.square() - feature_norm.square()).abs() / denominator
    return torch.where(denominator > 0, value, torch.full_like(value, float("nan")))


def normalised_mse(dense: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """‖z − ẑ‖² / ‖z‖² per token (NaN where z = 0)."""
    return (dense - reconstruction).square().sum(-1) / dense.square().sum(-1)


@dataclass
class AFASummary:
    """Summary of per-token AFA metrics: medians, quantiles and the over/under-activated shares."""

    n_tokens: int
    median_ratio: float
    ratio_quantiles: dict[float, float]
    share_over_activated: float
    share_under_activated: float
    median_eps_lbo: float
    eps_lbo_quantiles: dict[float, float]
    n_undefined_eps_lbo: int
    median_nmse: float
    mean_nmse: float
    nmse_quantiles: dict[float, float]
    mean_l0: float
    quantiles: tuple[float, ...] = field(default=DEFAULT_QUANTILES)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        """A small text table: one row per metric, columns median and the quantiles."""
        header = f"{'metric':<14}" + "".join(f"{f'q{q:g}':>10}" for q in self.quantiles)
        rows = [
            ("‖f̃‖/‖z‖", self.ratio_quantiles),
            ("ε_LBO", self.eps_lbo_quantiles),
            ("NMSE", self.nmse_quantiles),
        ]
        lines = [header] + [f"{name:<14}" + "".join(f"{values[q]:>10.4f}" for q in self.quantiles) for name, values in rows]
        lines.append(
            f"tokens {self.n_tokens}, mean L0 {self.mean_l0:.1f}, median ratio {self.median_ratio:.4f}, "
            f"over-activated {self.share_over_activated:.1%}, under-activated {self.share_under_activated:.1%}, "
            f"median ε_LBO {self.median_eps_lbo:.4f} ({self.n_undefined_eps_lbo} undefined), "
            f"mean NMSE {self.mean_nmse:.4f}"
        )
        return "\n".join(lines)


@dataclass
class AFATokenMetrics:
    """Per-token AFA metrics (1-D tensors of equal length, on the CPU): ‖z‖, ‖f̃‖, h, ε_LBO, NMSE, L0."""

    dense_norm: torch.Tensor
    feature_norm: torch.Tensor
    n_features: torch.Tensor
    eps_lbo: torch.Tensor
    nmse: torch.Tensor
    l0: torch.Tensor

    @property
    def ratio(self) -> torch.Tensor:
        """‖f̃‖ / ‖z‖ per token."""
        return self.feature_norm / self.dense_norm

    def __len__(self) -> int:
        return self.dense_norm.shape[0]

    @classmethod
    def concatenate(cls, parts: Sequence[AFATokenMetrics]) -> AFATokenMetrics:
        if not parts:
            raise ValueError("no activations were read: the source yielded no tokens.")
        return cls(*(torch.cat([getattr(p, name) for p in parts]) for name in cls.__dataclass_fields__))

    def summary(self, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> AFASummary:
        """Medians, quantiles (NaNs ignored) and shares of over-/under-activated tokens (ratio > 1 / < 1)."""
        quantiles = tuple(quantiles)
        q = torch.tensor(quantiles, dtype=torch.float64)

        def quantile_dict(values: torch.Tensor) -> dict[float, float]:
            return dict(zip(quantiles, torch.nanquantile(values.double(), q).tolist()))

        ratio = self.ratio
        return AFASummary(
            n_tokens=len(self),
            median_ratio=torch.nanmedian(ratio.double()).item(),
            ratio_quantiles=quantile_dict(ratio),
            share_over_activated=(ratio > 1).double().mean().item(),
            share_under_activated=(ratio < 1).double().mean().item(),
            median_eps_lbo=torch.nanmedian(self.eps_lbo.double()).item(),
            eps_lbo_quantiles=quantile_dict(self.eps_lbo),
            n_undefined_eps_lbo=int(self.eps_lbo.isnan().sum()),
            median_nmse=torch.nanmedian(self.nmse.double()).item(),
            mean_nmse=self.nmse.double().nanmean().item(),
            nmse_quantiles=quantile_dict(self.nmse),
            mean_l0=self.l0.double().mean().item(),
            quantiles=quantiles,
        )


@torch.no_grad()
def afa_token_metrics(sae: SAE[Any], activations: torch.Tensor) -> AFATokenMetrics:
    """AFA metrics of every token of ``activations`` [..., d_in] under ``sae`` (any SAELens SAE)."""
    x = activations.to(device=sae.W_dec.device, dtype=sae.dtype)
    if x.shape[-1] != sae.cfg.d_in:
        raise ValueError(f"activations have d_in {x.shape[-1]} but the SAE expects d_in {sae.cfg.d_in}: check the hook.")
    x = x.reshape(-1, x.shape[-1])
    feature_acts = sae.encode(x)
    if feature_acts.is_sparse:
        feature_acts = feature_acts.to_dense()
    reconstruction = sae.decode(feature_acts)
    dense = sae.run_time_activation_norm_fn_in(sae.reshape_fn_in(x))
    f_tilde = approximate_feature_vector(feature_acts, decoder_scaled_norms(sae), sae.b_dec)
    dense_norm = torch.linalg.vector_norm(dense, dim=-1)
    feature_norm = torch.linalg.vector_norm(f_tilde, dim=-1)
    n_features = (f_tilde != 0).sum(-1)
    return AFATokenMetrics(
        dense_norm=dense_norm.float().cpu(),
        feature_norm=feature_norm.float().cpu(),
        n_features=n_features.cpu(),
        eps_lbo=epsilon_lbo(dense_norm, feature_norm, n_features).float().cpu(),
        nmse=normalised_mse(x, reconstruction).float().cpu(),
        l0=(feature_acts != 0).sum(-1).cpu(),
    )


def afa_diagnostics(
    sae: SAE[Any],
    source: Any,
    *,
    max_tokens: int | None = None,
    batch_size: int = 4096,
    hook_name: str | None = None,
    token_filter: TokenFilter | None = None,
    progress: bool = True,
) -> AFATokenMetrics:
    """Per-token AFA metrics of ``sae`` over an activation source, on the tokens ``token_filter`` keeps.

    ``source``: a tensor [..., d_in], an iterable of tensors, a SAELens ``ActivationsStore`` (then
    ``max_tokens`` is required) or a SAELens cached-activations directory (see
    :func:`wsae_lens.activations.iter_activation_batches`). Tokens are processed ``batch_size`` at
    a time; ``hook_name`` picks the column of a cached directory (default: the SAE's hook, else the only one).
    ``token_filter`` defaults to the one the SAE records in its ``cfg.json`` (the filter it was trained
    with), else the source's default (:func:`wsae_lens.activations.source_token_filter`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1; got {batch_size}.")
    if hook_name is None and isinstance(source, (str, Path)) and Path(source).is_dir():
        hook_name = sae.cfg.metadata.get("hook_name")
        from wsae_lens.activations.sources import cached_activations_hook_name

        try:
            cached_activations_hook_name(Path(source), hook_name)
        except ValueError:
            hook_name = None  # the SAE's hook is not a column: fall back to the only activation column
    parts = []
    bar = tqdm(total=max_tokens, unit="tok", desc="AFA diagnostics", disable=not progress)
    token_filter = token_filter or TokenFilter.recorded_in(sae)
    for batch in iter_activation_batches(source, max_tokens=max_tokens, hook_name=hook_name, token_filter=token_filter):
        for chunk in batch.activations.split(batch_size):
            parts.append(afa_token_metrics(sae, chunk))
            bar.update(chunk.shape[0])
    bar.close()
    return AFATokenMetrics.concatenate(parts)


def zf_plot(
    metrics: AFATokenMetrics,
    path: str | Path,
    *,
    cones: Sequence[float] = DEFAULT_CONES,
    title: str | None = None,
    max_points: int = 20_000,
) -> Path:
    """Write the ZF plot (x = ‖z‖, y = ‖f̃‖, one point per token) with y = x and the ε(h−1) cones to ``path``.

    Cones: y = x·sqrt(1/(1 + c)) below the line and y = x·sqrt(1/(1 − c)) above it (only for c < 1), for
    each c = ε(h−1) in ``cones``. At most ``max_points`` tokens are drawn (an evenly spaced subset).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise ValueError(f"{path}: the ZF plot path must end in .png, .pdf or .svg.")
    path.parent.mkdir(parents=True, exist_ok=True)
    step = max(1, len(metrics) // max_points)
    x = metrics.dense_norm[::step].numpy()
    y = metrics.feature_norm[::step].numpy()
    summary = metrics.summary()
    figure, axes = plt.subplots(figsize=(5.5, 5))
    axes.scatter(x, y, s=4, alpha=0.4, color="tab:blue", linewidths=0, label=f"tokens ({len(metrics)})")
    top = float(max(x.max(initial=0.0), y.max(initial=0.0))) * 1.05 or 1.0
    line = torch.linspace(0, top, 2).numpy()
    axes.plot(line, line, color="black", linewidth=1, label="y = x")
    for c, style in zip(cones, ("--", "-.", ":", (0, (1, 3)))):
        axes.plot(line, line * (1 / (1 + c)) ** 0.5, color="tab:red", linestyle=style, linewidth=0.9, label=f"ε(h−1) = {c:g}")
        if c < 1:
            axes.plot(line, line * (1 / (1 - c)) ** 0.5, color="tab:red", linestyle=style, linewidth=0.9)
    axes.set_xlim(0, top)
    axes.set_ylim(0, top)
    axes.set_xlabel("‖z‖ (dense activation norm)")
    axes.set_ylabel("‖f̃‖ (approximate feature activation)")
    axes.set_title(
        title
        or f"ZF plot: median ‖f̃‖/‖z‖ {summary.median_ratio:.3f}, under-activated {summary.share_under_activated:.0%}",
        fontsize=9,
    )
    axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
