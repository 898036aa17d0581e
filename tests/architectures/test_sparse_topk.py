"""Sparse TopK training path: same loss, gradients and trajectory as SAELens's dense TopK step.

Tolerance (float32): losses rtol 1e-5; outputs and gradients atol 1e-5 · max|dense value| (sums are
taken over k latents instead of d_sae and W_enc is stored latent-major, so only the rounding differs); a 15-step Adam trajectory and a SAETrainer run
stay within rtol 1e-4 of the dense one.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from sae_lens import SAE, LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, TopKTrainingSAE
from sae_lens import TopKTrainingSAEConfig
from sae_lens.saes.sae import TrainStepInput

from tests.conftest import tiny_runner_config_dict
from wsae_lens import WeightedTopKTrainingSAE, WeightedTopKTrainingSAEConfig
from wsae_lens.architectures.sparse.buffers import gradient_buffer
from wsae_lens.architectures.sparse.mixin import AUTO_MIN_D_SAE, use_sparse_training
from wsae_lens.architectures.sparse.ops import is_latent_major, selected_preactivations
from wsae_lens.architectures.sparse.selection import sparse_topk_encode

D_IN, D_SAE, N = 12, 80, 24


def make_pair(
    gamma: torch.Tensor | None = None, sae_class: type[WeightedTopKTrainingSAE] = WeightedTopKTrainingSAE, **fields
) -> tuple[WeightedTopKTrainingSAE, WeightedTopKTrainingSAE]:
    """(sparse, dense) weighted TopK SAEs with identical random weights (decoder rows of varied norm)."""
    fields = {"d_in": D_IN, "d_sae": D_SAE, "k": 5, **fields}
    sparse = sae_class(WeightedTopKTrainingSAEConfig(sparse_training=True, **fields))
    dense = sae_class(WeightedTopKTrainingSAEConfig(sparse_training=False, **fields))
    with torch.no_grad():
        for parameter in sparse.parameters():
            parameter.normal_()
        sparse.W_dec.mul_(torch.rand(fields["d_sae"], 1) + 0.3)
    if gamma is not None:
        sparse.set_gamma(gamma)
    dense.load_state_dict(sparse.state_dict())
    return sparse, dense


def step(sae, x: torch.Tensor, dead: torch.Tensor | None = None):
    output = sae.training_forward_pass(
        TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=dead, n_training_steps=0, is_logging_step=False)
    )
    output.loss.backward()
    return output


def assert_same_step(sparse, dense, x: torch.Tensor, dead: torch.Tensor | None = None) -> None:
    out_sparse, out_dense = step(sparse, x, dead), step(dense, x, dead)
    assert out_sparse.feature_acts.is_sparse and not out_dense.feature_acts.is_sparse
    assert set(out_sparse.losses) == set(out_dense.losses)
    for name in out_dense.losses:
        torch.testing.assert_close(out_sparse.losses[name], out_dense.losses[name], rtol=1e-5, atol=1e-6)
    out_scale = out_dense.sae_out.abs().max().item()
    torch.testing.assert_close(out_sparse.sae_out, out_dense.sae_out, rtol=1e-5, atol=1e-5 * out_scale)
    torch.testing.assert_close(out_sparse.feature_acts.to_dense(), out_dense.feature_acts, rtol=0, atol=0)
    for (name, p_sparse), (_, p_dense) in zip(sparse.named_parameters(), dense.named_parameters()):
        scale = p_dense.grad.abs().max().item()
        torch.testing.assert_close(p_sparse.grad, p_dense.grad, rtol=0, atol=1e-5 * scale, msg=name)


@pytest.mark.parametrize("rescale", [True, False])
@pytest.mark.parametrize("apply_b_dec_to_input", [True, False])
@pytest.mark.parametrize("k", [1, 5, D_SAE])
def test_sparse_step_equals_dense_step(rescale, apply_b_dec_to_input, k):
    sparse, dense = make_pair(
        torch.rand(D_IN) + 0.5, k=k, rescale_acts_by_decoder_norm=rescale, apply_b_dec_to_input=apply_b_dec_to_input
    )
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[torch.randperm(D_SAE)[:9]] = True  # 9 > k_aux = 6: AuxK picks among the dead
    assert_same_step(sparse, dense, torch.randn(N, D_IN) * 2, dead)


@pytest.mark.parametrize("n_dead", [0, 3, D_SAE])
def test_auxk_sizes(n_dead):
    """No dead latents (no AuxK), fewer dead than k_aux (scaled-down loss), all dead."""
    sparse, dense = make_pair(torch.rand(D_IN) + 0.5)
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[:n_dead] = True
    assert_same_step(sparse, dense, torch.randn(N, D_IN), dead)


class ExtraLossesSAE(WeightedTopKTrainingSAE):
    """Overrides only ``calculate_aux_loss``: AuxK tripled, an L1 penalty on the activations, a constant."""

    def calculate_aux_loss(self, step_input, feature_acts, hidden_pre, sae_out):
        auxk = super().calculate_aux_loss(step_input, feature_acts, hidden_pre, sae_out)
        return {
            "auxiliary_reconstruction_loss": 3 * auxk["auxiliary_reconstruction_loss"],
            "l1_loss": 10 * feature_acts.abs().sum() / len(sae_out),  # as large as the MSE here
            "constant_loss": sae_out.new_tensor(0.25),
        }


class ConstantLossSAE(WeightedTopKTrainingSAE):
    """Overrides only ``calculate_aux_loss``, dropping AuxK for a constant."""

    def calculate_aux_loss(self, step_input, feature_acts, hidden_pre, sae_out):
        return {"constant_loss": sae_out.new_tensor(0.25)}


@pytest.mark.parametrize("rescale", [True, False])
def test_overridden_aux_loss_is_trained_on_both_paths(rescale):
    """A subclass overriding only calculate_aux_loss gets exactly its losses, and their gradients, either way."""
    sparse, dense = make_pair(torch.rand(D_IN) + 0.5, ExtraLossesSAE, rescale_acts_by_decoder_norm=rescale)
    plain = WeightedTopKTrainingSAE(dense.cfg)
    plain.load_state_dict(dense.state_dict())
    x, dead = torch.randn(N, D_IN), torch.rand(D_SAE) < 0.3
    auxk = step(plain, x, dead).losses["auxiliary_reconstruction_loss"]
    assert auxk > 0
    for sae in (sparse, dense):
        output = step(sae, x, dead)
        assert set(output.losses) == {"mse_loss", "auxiliary_reconstruction_loss", "l1_loss", "constant_loss"}
        torch.testing.assert_close(output.losses["auxiliary_reconstruction_loss"], 3 * auxk, rtol=1e-5, atol=0)
        assert output.losses["constant_loss"].item() == 0.25
        torch.testing.assert_close(output.loss, sum(output.losses.values()), rtol=1e-6, atol=0)
        sae.zero_grad()
    assert_same_step(sparse, dense, x, dead)  # the L1 penalty's gradient included (through ‖W_dec,j‖ too)


def test_aux_loss_override_can_drop_auxk_on_both_paths():
    sparse, dense = make_pair(sae_class=ConstantLossSAE)
    x, dead = torch.randn(N, D_IN), torch.rand(D_SAE) < 0.3
    for sae in (sparse, dense):
        output = step(sae, x, dead)
        assert set(output.losses) == {"mse_loss", "constant_loss"}
        assert output.loss.item() == pytest.approx(output.losses["mse_loss"].item() + 0.25, rel=1e-6)


def test_sparse_training_emits_no_user_warning():
    """Torch warns once per process ("Sparse CSR tensor support is in beta state"): train in a fresh one."""
    script = textwrap.dedent("""
        import warnings
        import torch
        from sae_lens.saes.sae import TrainStepInput
        from wsae_lens import WeightedTopKTrainingSAE, WeightedTopKTrainingSAEConfig

        warnings.simplefilter("error", UserWarning)
        sae = WeightedTopKTrainingSAE(WeightedTopKTrainingSAEConfig(d_in=12, d_sae=80, k=4, sparse_training=True))
        optimizer = torch.optim.Adam(sae.parameters(), lr=1e-3)
        for _ in range(3):
            step_input = TrainStepInput(torch.randn(16, 12), {}, torch.rand(80) < 0.3, 0, False)
            output = sae.training_forward_pass(step_input)
            assert output.feature_acts.is_sparse
            output.loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_ties_select_the_same_latents():
    """Duplicate encoder columns and decoder rows make exact ties in h; both paths break them alike."""
    sparse, dense = make_pair(k=4)
    with torch.no_grad():
        for sae in (sparse, dense):
            sae.W_enc[:, 1::2] = sae.W_enc[:, 0::2]
            sae.b_enc[1::2] = sae.b_enc[0::2]
            sae.W_dec[1::2] = sae.W_dec[0::2]
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[::3] = True
    assert_same_step(sparse, dense, torch.randn(N, D_IN), dead)


def test_uniform_gamma_is_saelens_topk():
    """Γ = 1: the sparse weighted_topk step is SAELens's TopKTrainingSAE step."""
    sparse, _ = make_pair()
    saelens = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=5))
    saelens.load_state_dict({name: value for name, value in sparse.state_dict().items() if name != "gamma"})
    dead = torch.rand(D_SAE) < 0.2
    assert_same_step(sparse, saelens, torch.randn(N, D_IN), dead)


def test_adam_trajectory_matches_dense():
    sparse, dense = make_pair(torch.rand(D_IN) + 0.5, k=4)
    optimizers = [torch.optim.Adam(sae.parameters(), lr=1e-2) for sae in (sparse, dense)]
    data = torch.randn(15, N, D_IN)
    dead = torch.rand(D_SAE) < 0.3
    losses: dict[int, list[float]] = {0: [], 1: []}
    for batch in data:
        for i, (sae, optimizer) in enumerate(zip((sparse, dense), optimizers)):
            losses[i].append(step(sae, batch, dead).loss.item())
            torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
    torch.testing.assert_close(torch.tensor(losses[0]), torch.tensor(losses[1]), rtol=1e-4, atol=0)
    for p_sparse, p_dense in zip(sparse.parameters(), dense.parameters()):
        torch.testing.assert_close(p_sparse, p_dense, rtol=1e-4, atol=1e-5)


def test_saelens_trainer_run_matches_dense(tmp_path, tiny_model, byte_dataset):
    """SAELens's runner and SAETrainer (COO feature_acts in its firing statistics, AuxK on dead latents)."""
    trained = {}
    for sparse_training in (True, False):
        torch.manual_seed(0)  # same initialisation and activation-store shuffling in both runs
        config = tiny_runner_config_dict(
            tmp_path / str(sparse_training), "weighted_topk", sparse_training=sparse_training, d_sae=96
        )
        config.update(training_tokens=2048, dead_feature_window=3, feature_sampling_window=4)
        runner_cfg = LanguageModelSAERunnerConfig.from_dict(config)
        runner = LanguageModelSAETrainingRunner(runner_cfg, override_model=tiny_model, override_dataset=byte_dataset)
        trained[sparse_training] = runner.run()
    for name, value in trained[False].state_dict().items():
        torch.testing.assert_close(trained[True].state_dict()[name], value, rtol=1e-4, atol=1e-5)
    loaded = SAE.load_from_disk(tmp_path / "True" / "output")
    assert loaded.cfg.architecture() == "weighted_topk"


def test_no_dense_latent_tensor_saved_for_backward():
    sae, _ = make_pair()
    sae.cfg.k = 2
    saved_sizes: list[int] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.layout == torch.strided:  # the COO feature_acts (saved by their constructor) hold N·k values
            saved_sizes.append(tensor.numel())
        return tensor

    x = torch.randn(N, D_IN)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = sae.training_forward_pass(
            TrainStepInput(x, {}, torch.rand(D_SAE) < 0.2, n_training_steps=0, is_logging_step=False)
        )
    parameters = {p.numel() for p in sae.parameters()}
    assert saved_sizes
    too_big = [size for size in saved_sizes if size >= N * D_SAE and size not in parameters]
    assert not too_big, too_big
    assert output.hidden_pre.is_sparse and output.feature_acts.is_sparse


def test_chunked_selection_matches_single_chunk():
    sae, _ = make_pair(k=6)
    x = torch.randn(50, D_IN)
    centered = sae.process_sae_in(x).detach()
    dead = torch.rand(D_SAE) < 0.5
    whole, chunked = (
        sparse_topk_encode(
            centered, sae.W_enc, sae.b_enc, sae.W_dec, 6, dead_neuron_mask=dead, k_aux=4, chunk_rows=rows
        )
        for rows in (None, 7)
    )
    torch.testing.assert_close(chunked.acts.to_dense(), whole.acts.to_dense())
    torch.testing.assert_close(chunked.aux_indices.sort().values, whole.aux_indices.sort().values)


def test_selected_preactivations_gradients_including_scale():
    """The autograd.Function against dense autograd, with a scale that requires grad (e.g. decoder norms)."""
    torch.manual_seed(1)
    x, offset = torch.randn(N, D_IN), torch.randn(D_IN, requires_grad=True)
    W_enc, b_enc = torch.randn(D_IN, D_SAE, requires_grad=True), torch.randn(D_SAE, requires_grad=True)
    scale_per_latent = (torch.rand(D_SAE) + 0.5).requires_grad_()
    indices = torch.rand(N, D_SAE).topk(7).indices
    weights = torch.randn(N, 7)

    reference = (((x - offset) @ W_enc + b_enc) * scale_per_latent).gather(1, indices)
    (reference * weights).sum().backward()
    expected = [t.grad.clone() for t in (offset, W_enc, b_enc, scale_per_latent)]
    for t in (offset, W_enc, b_enc, scale_per_latent):
        t.grad = None

    centered = (x - offset).detach()
    h = selected_preactivations(
        reference.detach(), centered, W_enc, b_enc, indices, input_offset=offset, scale=scale_per_latent[indices]
    )
    (h * weights).sum().backward()
    for got, want in zip((offset.grad, W_enc.grad, b_enc.grad, scale_per_latent.grad), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="centered_input must not require grad"):
        selected_preactivations(reference, x.requires_grad_(), W_enc, b_enc, indices)


def test_inference_encode_and_forward_unchanged():
    sparse, dense = make_pair()
    x = torch.randn(N, D_IN)
    torch.testing.assert_close(sparse.encode(x), dense.encode(x), rtol=0, atol=0)
    torch.testing.assert_close(sparse(x), dense(x), rtol=0, atol=0)


def test_fallbacks_to_dense():
    sparse, _ = make_pair()
    x = torch.randn(N, D_IN)
    assert step(sparse, x).feature_acts.is_sparse
    handle = sparse.hook_sae_acts_post.add_hook(lambda acts, hook: acts)
    assert not step(sparse, x).feature_acts.is_sparse  # hooks see SAELens's dense activations
    sparse.reset_hooks()
    assert not step(sparse, x.clone().requires_grad_()).feature_acts.is_sparse
    del handle


def test_auto_rule_and_config_validation():
    assert not use_sparse_training("auto", AUTO_MIN_D_SAE - 1, 4)
    assert use_sparse_training("auto", 24576, 32)
    assert not use_sparse_training("auto", 4608, 4608)
    assert use_sparse_training(True, 8, 8) and not use_sparse_training(False, 24576, 32)
    assert WeightedTopKTrainingSAEConfig(d_in=4, d_sae=8, k=2).sparse_training == "auto"
    with pytest.raises(ValueError, match="sparse_training"):
        WeightedTopKTrainingSAEConfig(d_in=4, d_sae=8, k=2, sparse_training="yes")


def test_gradients_accumulate_over_backward_passes_without_zero_grad():
    """A reused gradient buffer must never alias the .grad it accumulates into."""
    sparse, dense = make_pair(torch.rand(D_IN) + 0.5)
    batches = torch.randn(3, N, D_IN)
    for sae in (sparse, dense):
        for batch in batches:
            step(sae, batch)
    for name, p_sparse in sparse.named_parameters():
        p_dense = dict(dense.named_parameters())[name]
        torch.testing.assert_close(p_sparse.grad, p_dense.grad, rtol=0, atol=1e-5 * p_dense.grad.abs().max().item())


def test_gradient_buffer_is_reused_only_once_released():
    parameter = torch.nn.Parameter(torch.zeros(6, 4))
    first = gradient_buffer(parameter, (6, 4))
    held = gradient_buffer(parameter, (6, 4))
    assert held.data_ptr() != first.data_ptr()  # `first` is still referenced: never handed out twice
    released_ptr = held.data_ptr()
    del first, held
    assert gradient_buffer(parameter, (6, 4)).data_ptr() == released_ptr
    assert gradient_buffer(parameter, (4, 6), "other").shape == (4, 6)


def test_sparse_training_stores_encoder_latent_major_and_saves_contiguous(tmp_path):
    sparse, dense = make_pair()
    assert is_latent_major(sparse.W_enc) and dense.W_enc.is_contiguous()
    step(sparse, torch.randn(N, D_IN))
    assert is_latent_major(sparse.W_enc.grad)  # adopted by autograd as computed, no transpose copy
    sparse.save_model(tmp_path)
    loaded = WeightedTopKTrainingSAE.load_from_disk(tmp_path)
    torch.testing.assert_close(loaded.W_enc, sparse.W_enc, rtol=0, atol=0)
