"""Every loss against a value derived by hand (in the comment beside it) or a limiting case."""

import math

import pytest
import torch

from weightspace.registry import _batch as L
from weightspace.model.sequences import token_logps
from weightspace.registry.dft import dft_loss
from weightspace.registry.dpo import dpo_loss
from weightspace.registry.grpo import grpo_advantages, grpo_loss
from weightspace.registry.ipo import ipo_loss
from weightspace.registry.kto import kto_loss
from weightspace.registry.rft import rft_loss
from weightspace.registry.rift import rift_loss
from weightspace.registry.sft import sft_loss
from weightspace.registry.simpo import simpo_loss
from weightspace.model import sequences


def uniform2(B=2, T=3):
    """Logits over a uniform 2-token vocabulary: every token has p = 1/2, log p = -log 2."""
    logits = torch.zeros(B, T, 2, requires_grad=True)
    ids = torch.zeros(B, T, dtype=torch.long)
    return logits, ids


def test_dpo_policy_equals_reference_is_log2():
    lp = torch.tensor([-12.3, -4.0, -80.0])
    out = dpo_loss(lp, lp - 1.5, lp, lp - 1.5, beta=0.1)
    assert torch.allclose(out, torch.full((3,), math.log(2.0)), atol=0, rtol=1e-7)


def test_dpo_margins_by_hand():
    # -log sigmoid(0.1 * m) = log(1 + exp(-0.1 m)): m=0 -> log 2, m=10 -> log(1 + e^-1), m=20 -> log(1 + e^-2)
    margins = torch.tensor([0.0, 10.0, 20.0])
    z = torch.zeros(3)
    out = dpo_loss(margins, z, z, z, beta=0.1)
    assert out.tolist() == pytest.approx([0.693147, 0.313262, 0.126928], abs=1e-6)
    # the reference enters with the opposite sign
    assert dpo_loss(z, z, -margins, z, beta=0.1).tolist() == pytest.approx(out.tolist())


def test_dft_on_uniform_two_token_vocab_is_half_the_cross_entropy():
    logits, ids = uniform2()
    mask = torch.ones(2, 3)
    lp = token_logps(logits, ids)  # (2, 2): every entry -log 2
    mask = mask[:, 1:]
    dft = dft_loss(lp, mask, normaliser=mask.sum())
    ce = sft_loss(lp, mask, normaliser=mask.sum())
    assert ce.item() == pytest.approx(math.log(2))
    assert dft.item() == pytest.approx(0.5 * ce.item(), abs=1e-7)
    (g_dft,) = torch.autograd.grad(dft, logits)
    (g_ce,) = torch.autograd.grad(sft_loss(token_logps(logits, ids), mask, mask.sum()), logits)
    assert torch.allclose(g_dft, 0.5 * g_ce, atol=1e-8)


def test_rft_on_all_correct_batch_equals_sft():
    torch.manual_seed(0)
    lp = -torch.rand(4, 6)
    mask = (torch.rand(4, 6) > 0.3).float()
    n = mask.sum()
    assert rft_loss(lp, mask, torch.ones(4), n).item() == pytest.approx(sft_loss(lp, mask, n).item())
    # a negative row contributes nothing
    r = torch.tensor([1.0, 0.0, 1.0, 1.0])
    keep = r.bool()
    assert rft_loss(lp, mask, r, n).item() == pytest.approx(sft_loss(lp[keep], mask[keep], n).item())


def test_sft_by_hand():
    # rows: log p = [-1, -2 | -3 masked] and [-0.5, -0.5, -0.5]; N = 5 -> (1 + 2 + 1.5) / 5 = 0.9
    lp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -0.5]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    assert sft_loss(lp, mask, 5).item() == pytest.approx(0.9)


def test_grpo_equal_rewards_no_bias_gives_zero_loss_and_gradient():
    reward = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    group = torch.tensor([0, 0, 0, 1, 1, 1])
    for std_norm in ("none", "group"):
        adv = grpo_advantages(reward, group, bias=0.0, std_norm=std_norm, bias_scope="all")
        assert torch.equal(adv, torch.zeros(6, dtype=torch.float64))
        logits = torch.randn(6, 5, 7, requires_grad=True)
        lp = token_logps(logits, torch.randint(0, 7, (6, 5)))
        loss = grpo_loss(lp, torch.ones(6, 4), adv, 24)
        (g,) = torch.autograd.grad(loss, logits)
        assert loss.item() == 0.0 and torch.count_nonzero(g) == 0


def test_grpo_advantages_by_hand_and_std_convention():
    # group 0 rewards [1, 0, 0, 0]: mean 1/4 -> centred [3/4, -1/4, -1/4, -1/4]
    # sample std (ddof=1): sqrt((9/16 + 3/16) / 3) = 1/2 -> scaled [1.5, -0.5, -0.5, -0.5] (eps 1e-4 aside)
    reward = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    group = torch.tensor([0, 0, 0, 0, 7, 7])
    a = grpo_advantages(reward, group, bias=0.1, std_norm="none", bias_scope="all")
    assert a.tolist() == pytest.approx([0.85, -0.15, -0.15, -0.15, 0.1, 0.1])
    a = grpo_advantages(reward, group, bias=0.1, std_norm="group", bias_scope="all", eps=0.0)
    assert a.tolist() == pytest.approx([1.6, -0.4, -0.4, -0.4, 0.1, 0.1])
    a = grpo_advantages(reward, group, bias=0.1, std_norm="none", bias_scope="all_correct")
    assert a.tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25, 0.1, 0.1])  # b only in the all-correct group 7


def test_grpo_loss_by_hand():
    # A = [2, -1]; l = [1 + 2, 0.5]; N = 3 -> (2*3 - 0.5) / 3
    lp = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert grpo_loss(lp, mask, torch.tensor([2.0, -1.0]), 3).item() == pytest.approx(5.5 / 3)


def test_rift_token_by_hand():
    # positive row log p = [log .5, log .25] -> MLE term log2 + log4 = 3 log 2
    # negative row p = [.5, .1], lambda .2 -> .2 * .6 = .12; N = 4
    lp = torch.log(torch.tensor([[0.5, 0.25], [0.5, 0.1]]))
    out = rift_loss(lp, torch.ones(2, 2), torch.tensor([1.0, 0.0]), 4, 0.2, "token")
    assert out.item() == pytest.approx((3 * math.log(2) + 0.12) / 4)


def test_rift_written_form_by_hand():
    # weights (1 - r lambda): positive 0.8, negative 1.0; l = [2, 3] -> (1.6 + 3) / 5
    lp = torch.tensor([[-2.0], [-3.0]])
    out = rift_loss(lp, torch.ones(2, 1), torch.tensor([1.0, 0.0]), 5, 0.2, "written")
    assert out.item() == pytest.approx(4.6 / 5)


def test_rift_sequence_form_collapses_to_rft_on_long_completions():
    # 200 tokens at p = 1/2: pi(y|x) = 2^-200 ~ 6e-61, so the negative term and its gradient vanish
    T = 200
    logits = torch.zeros(4, T + 1, 2, requires_grad=True)
    ids = torch.zeros(4, T + 1, dtype=torch.long)
    reward = torch.tensor([1.0, 0.0, 1.0, 0.0])
    mask = torch.ones(4, T)
    lp = token_logps(logits, ids)
    seq = rift_loss(lp, mask, reward, 4 * T, 0.2, "sequence")
    rft = rft_loss(lp, mask, reward, 4 * T)
    assert abs(seq.item() - rft.item()) < 1e-30
    (g,) = torch.autograd.grad(seq, logits)
    assert g[1].abs().max().item() < 1e-30 and g[0].abs().max().item() > 1e-4
    # the token form keeps the negative rows' gradient alive
    tok = rift_loss(token_logps(logits, ids), mask, reward, 4 * T, 0.2, "token")
    (g,) = torch.autograd.grad(tok, logits)
    assert g[1].abs().max().item() > 1e-5


def test_rift_unknown_variant():
    with pytest.raises(ValueError, match="rift.variant"):
        rift_loss(torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1), 1, 0.2, "tokens")


def test_token_logps_matches_cross_entropy():
    torch.manual_seed(1)
    logits, ids = torch.randn(3, 5, 11), torch.randint(0, 11, (3, 5))
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), ids[:, 1:].reshape(-1), reduction="none")
    assert torch.allclose(-token_logps(logits, ids).reshape(-1), ce, atol=1e-6)


def test_ipo_by_hand():
    z = torch.zeros(2)
    n = torch.ones(2)
    # policy == reference: h = 0, L = (0 - 1/(2 tau))^2 = 1/(4 tau^2) = 25 at tau = 0.1
    assert ipo_loss(z, z, z, z, n, n, tau=0.1).tolist() == pytest.approx([25.0, 25.0])
    # chosen log-ratio 6 over 3 tokens = 2, rejected -3 over 1 token = -3: h = 5; tau 0.1: (5 - 5)^2 = 0,
    # tau 0.25: (5 - 2)^2 = 9
    pc, rc, pr, rr = torch.tensor([6.0]), torch.tensor([0.0]), torch.tensor([-3.0]), torch.tensor([0.0])
    three, one = torch.tensor([3.0]), torch.tensor([1.0])
    assert ipo_loss(pc, pr, rc, rr, three, one, tau=0.1).item() == pytest.approx(0.0, abs=1e-12)
    assert ipo_loss(pc, pr, rc, rr, three, one, tau=0.25).item() == pytest.approx(9.0)
    # the reference enters with the opposite sign: moving it by +6 on the chosen side cancels the policy's 6
    assert ipo_loss(pc, pr, pc, rr, three, one, tau=0.25).item() == pytest.approx((0 + 3 - 2) ** 2)


def test_simpo_by_hand():
    # equal averages: -log sigmoid(-gamma) = log(1 + e^gamma) = 1.313262 at gamma = 1
    a = torch.tensor([-1.5])
    assert simpo_loss(a, a, beta=2.0, gamma=1.0).item() == pytest.approx(math.log(1 + math.e), abs=1e-6)
    # beta (avg_w - avg_l) - gamma = 2 * (-1 + 2) - 1 = 1: log(1 + e^-1) = 0.313262
    out = simpo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), 2.0, 1.0)
    assert out.item() == pytest.approx(0.313262, abs=1e-6)


def test_kto_by_hand():
    z = torch.zeros(2)
    both = torch.tensor([True, False])
    # policy == reference, z0 = 0: every row 1 - sigmoid(0) = 1/2, times its weight
    assert kto_loss(z, z, both, z, z, 0.5, 1.0, 3.0).tolist() == pytest.approx([0.5, 1.5])
    # KL pairs differ by 1 and 3: z0 = mean = 2. Desirable r = 4, beta 0.5: 1 - sigmoid(1) = 0.268941;
    # undesirable r = 4: 1 - sigmoid(0.5 (2 - 4)) = 1 - sigmoid(-1) = 0.731059
    r = torch.tensor([4.0, 4.0])
    kl_p, kl_r = torch.tensor([1.0, 3.0]), torch.zeros(2)
    assert kto_loss(r, z, both, kl_p, kl_r, 0.5, 1.0, 1.0).tolist() == pytest.approx([0.268941, 0.731059], abs=1e-6)
    # a negative KL estimate is clamped to 0: undesirable r = 2: 1 - sigmoid(0.5 (0 - 2)) = 0.731059
    neg = torch.tensor([-1.0, -3.0])
    assert kto_loss(torch.tensor([2.0, 2.0]), z, both, neg, kl_r, 0.5, 1.0, 1.0)[1].item() == pytest.approx(0.731059,
                                                                                                            abs=1e-6)


def test_kto_reference_point_carries_no_gradient():
    # z0 is detached (TRL computes the KL sequences under no_grad): the loss does not move them
    kl_p = torch.tensor([1.0, 3.0], requires_grad=True)
    r = torch.tensor([4.0, 1.0], requires_grad=True)
    kto_loss(r, torch.zeros(2), torch.tensor([True, False]), kl_p, torch.zeros(2), 0.5, 1.0, 1.0).sum().backward()
    assert kl_p.grad is None or torch.count_nonzero(kl_p.grad) == 0
    assert torch.count_nonzero(r.grad) == 2


def full_vocab_logps(logits, input_ids):
    """The definition token_logps must equal: a full (B, T-1, V) float32 log_softmax, gathered."""
    return torch.gather(logits[:, :-1].float().log_softmax(-1), 2, input_ids[:, 1:, None]).squeeze(-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_token_logps_is_the_full_vocab_log_softmax_values_and_gradients(dtype, monkeypatch):
    """Blocks of positions (3 rows x 9 positions in blocks of 4: a partial last block) give the full
    log_softmax's values and logit gradients to float32 rounding, for float32 and bf16 logits."""
    monkeypatch.setattr(sequences, "BLOCK_ELEMENTS", 4 * 37 + 3)  # 4 positions of 37 logits
    torch.manual_seed(2)
    logits = (3 * torch.randn(3, 10, 37)).to(dtype).requires_grad_()
    ids, g = torch.randint(0, 37, (3, 10)), torch.randn(3, 9)
    new, old = token_logps(logits, ids), full_vocab_logps(logits, ids)
    assert new.dtype == old.dtype == torch.float32
    torch.testing.assert_close(new, old, rtol=1e-6, atol=1e-6)
    (g_new,) = torch.autograd.grad((new * g).sum(), logits)
    (g_old,) = torch.autograd.grad((old * g).sum(), logits)
    assert g_new.dtype == dtype and g_new[:, -1].abs().max() == 0  # the last position predicts nothing
    torch.testing.assert_close(g_new, g_old, **({} if dtype == torch.float32 else {"rtol": 2**-8, "atol": 1e-6}))


def test_every_offline_method_has_a_micro_batch_loss_and_no_online_one_does():
    from weightspace.registry import REGISTRY

    assert {m for m, e in REGISTRY.items() if e.loss} == {m for m, e in REGISTRY.items() if not e.online}
    assert {m for m, e in REGISTRY.items() if e.table} <= {m for m, e in REGISTRY.items() if e.loss}


@pytest.mark.parametrize("method", [m for m, e in __import__("weightspace.registry").registry.REGISTRY.items()
                                    if not e.online])
def test_every_offline_loss_and_its_lora_gradients_are_unchanged_by_token_logps(method, monkeypatch):
    """Each offline method's first micro-batch on a tiny random Qwen3 with LoRA (tests/test_packing.py), its
    reference pass included: token_logps gives the full-vocabulary formula's loss and LoRA gradients to float32
    rounding in fp32, and under bf16 autocast to bf16 rounding: loss and gradients within the distance bf16 itself
    puts between the bf16 and fp32 results of the full formula (on PyTorch's generic float path the DFT gradients
    came within 0.11 of it)."""
    from test_packing import lora_model, method_loss_and_grads, rows_table

    from weightspace.tiny import model as tiny

    tok = tiny.train_tokenizer([r["prompt"] + " " + r["completion"] for r in rows_table()] * 5, 300)
    model = lora_model(tok)
    new32, new16 = (method_loss_and_grads(model, tok, method, False, bf16) for bf16 in (False, True))
    calls = []
    monkeypatch.setattr(sequences, "token_logps", lambda *a: calls.append(1) or full_vocab_logps(*a))  # sequence_logps'
    old32, old16 = (method_loss_and_grads(model, tok, method, False, bf16) for bf16 in (False, True))
    assert calls  # the baseline really went through the full-vocabulary formula
    assert old32[1].abs().max() > 1e-4  # a gradient worth comparing
    # fp32: each token's log-prob rounds in another order, and a pair loss's margin (policy minus reference over
    # whole sequences) amplifies that: 2.1e-6 relative for DPO measured on the generic float path
    assert new32[0] == pytest.approx(old32[0], rel=1e-5, abs=1e-7)
    torch.testing.assert_close(new32[1], old32[1], rtol=1e-5, atol=1e-6)
    bf16_error = (old16[1] - old32[1]).norm()
    assert bf16_error > 0  # bf16 really ran
    assert (new16[1] - old16[1]).norm() <= bf16_error, ((new16[1] - old16[1]).norm(), bf16_error)
    assert abs(new16[0] - old16[0]) <= abs(old16[0] - old32[0]), (new16[0], old16[0], old32[0])


def test_a_batch_hands_each_loss_its_sequences_by_name():
    """Units lay their sequences out in ``units`` order (a pair: chosen then rejected; a mismatch: the row then
    its mismatched sequence); ``Batch.column`` reads them back by name, and ``unit_items`` refuses a bare tuple."""
    from weightspace.train.training import Item, unit_items
    from weightspace.core.units import Mismatch, Preference, sequences

    logp = torch.tensor([[-1.0, -2.0], [-3.0, -4.0], [-5.0, -6.0], [-7.0, -8.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = L.Batch(logp, mask, torch.tensor([4, 9, 7, 2]), torch.zeros(10), {}, torch.tensor([0.5, 1.5, 2.5, 3.5]), 2.0,
                sequences("pairs"))
    assert b.logps("chosen").tolist() == [-3.0, -6.0] and b.logps("rejected").tolist() == [-3.0, -15.0]
    assert b.ref_logps("rejected").tolist() == [1.5, 3.5] and b.unit_rows("chosen").tolist() == [4, 7]
    assert b.lengths("rejected").tolist() == [1.0, 2.0] and b.mean_logps("chosen").tolist() == [-1.5, -6.0]
    k = L.Batch(logp, mask, torch.tensor([4, 9, 7, 2]), torch.zeros(10), {}, None, 2.0, sequences("unpaired"))
    assert k.unit_rows("row").tolist() == [4, 7] and k.logps("mismatched").tolist() == [-3.0, -15.0]
    items = {0: Item(0, (1,), (2,)), 1: Item(1, (3,), (4,))}
    assert unit_items(Preference((1, 0)), items) == [items[1], items[0]]
    assert unit_items(Mismatch((0, 1)), items)[1] == Item(0, (1,), (4,))
    with pytest.raises(TypeError, match="not a training unit"):
        unit_items((1, 0), items)
