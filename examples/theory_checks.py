"""Print the table of Theorem 1/4/5 checks in docs/identifiability.md (wsae_lens.diagnostics.theory)."""
import torch
torch.set_num_threads(1)
from wsae_lens.diagnostics import digon_wp, polygon_wp, random_wp, loss_gap_check, theorem1_check
for name, w in [("digon_wp(4,2)", digon_wp(4, 2)), ("polygon_wp([1,2,3,4])", polygon_wp([1, 2, 3, 4])), ("random_wp(12,6)", random_wp(12, 6))]:
    t4 = loss_gap_check(w, 0.8, n_samples=200_000)
    t5 = loss_gap_check(w, 0.8, gamma=torch.linspace(0.4, 1.6, w.shape[0]), n_samples=200_000)
    t1 = theorem1_check(w, 0.99)
    print(f"| {name} | {t4.gap:+.4f} | {t4.predicted_gap:+.4f} ({t4.z_score:+.1f}σ) | {t5.gap:+.4f} | {t5.predicted_gap:+.4f} ({t5.z_score:+.1f}σ) | {t1.is_local_minimum} (‖∇‖={t1.grad_norm_at_closed_form:.2g}) |")
