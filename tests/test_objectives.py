import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlhar.objectives import (
    HeadOutput,
    HierarchyConsistency,
    masked_bce,
    masked_cross_entropy,
    masked_mean,
    masked_regression,
)


def test_masked_ce_ignores_unlabelled_samples():
    logits = torch.randn(6, 4, requires_grad=True)
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    mask = torch.tensor([True, True, False, True, False, True])
    total, count = masked_cross_entropy(logits, target, mask)
    expected = torch.nn.functional.cross_entropy(logits[mask], target[mask], reduction="sum")
    assert count.item() == 4
    assert torch.allclose(total, expected)
    # garbage in a masked target (e.g. -1) changes nothing
    target2 = target.clone()
    target2[2] = -1
    total2, _ = masked_cross_entropy(logits, target2, mask)
    assert torch.equal(total, total2)
    masked_mean(total, count).backward()
    assert torch.all(logits.grad[~mask] == 0) and torch.any(logits.grad[mask] != 0)


def test_batch_without_labels_contributes_zero_and_stays_in_graph():
    head = torch.nn.Linear(3, 5)
    logits = head(torch.randn(4, 3))
    total, count = masked_cross_entropy(
        logits, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.bool)
    )
    loss = masked_mean(total, count)
    assert loss.item() == 0.0 and torch.isfinite(loss)
    loss.backward()
    # every parameter gets a (zero) gradient: DDP finds all of them on every rank
    assert head.weight.grad is not None and torch.all(head.weight.grad == 0)


def test_masked_bce_per_class_mask_and_regression_mask():
    logits = torch.randn(3, 4)
    target = torch.randint(0, 2, (3, 4)).float()
    mask = torch.tensor([[True, False, True, True]] * 3)
    total, count = masked_bce(logits, target, mask)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")[mask].sum()
    assert count.item() == 9 and torch.allclose(total, ref)
    pred, tgt = torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[1.5], [float("nan")], [2.0]])
    total, count = masked_regression(pred, tgt, torch.tensor([[True], [False], [True]]))
    assert count.item() == 2 and torch.isclose(
        total, torch.tensor(0.25 + 1.0)
    )  # NaN under the mask is ignored


@settings(max_examples=30, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=12), st.integers(0, 10_000))
def test_masked_mean_equals_mean_over_labelled(mask_list, seed):
    g = torch.Generator().manual_seed(seed)
    n = len(mask_list)
    logits, target = torch.randn(n, 3, generator=g), torch.randint(0, 3, (n,), generator=g)
    mask = torch.tensor(mask_list)
    loss = masked_mean(*masked_cross_entropy(logits, target, mask))
    if mask.any():
        ref = torch.nn.functional.cross_entropy(logits[mask], target[mask])
        assert torch.allclose(loss, ref, atol=1e-6)
    else:
        assert loss.item() == 0.0


def test_hierarchy_consistency_value_on_hand_made_input():
    # fine classes 0,1 -> coarse 0; fine 2 -> coarse 1
    term = HierarchyConsistency("fine", "coarse", [0, 0, 1], weight=1.0)
    fine = HeadOutput(output=torch.log(torch.tensor([[0.25, 0.25, 0.5]])), features=torch.zeros(1))
    coarse_same = HeadOutput(output=torch.log(torch.tensor([[0.5, 0.5]])), features=torch.zeros(1))
    coarse_off = HeadOutput(output=torch.log(torch.tensor([[0.9, 0.1]])), features=torch.zeros(1))
    assert term({"fine": fine, "coarse": coarse_same}, {}, {}).item() < 1e-6
    value = term({"fine": fine, "coarse": coarse_off}, {}, {}).item()
    expected = 0.5 * torch.log(torch.tensor(0.5 / 0.9)) + 0.5 * torch.log(torch.tensor(0.5 / 0.1))
    assert abs(value - expected.item()) < 1e-5
