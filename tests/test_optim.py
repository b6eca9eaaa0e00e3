"""jedi_core.optim: AdamW's parameter groups, the warm-up, and the one update every component goes through."""

import pytest
import torch
from torch import nn

from jedi_core.optim import Update, decay_split, linear_warmup, make_adamw, optimizer_step


def _model():
    torch.manual_seed(0)
    return nn.ModuleDict({"body": nn.Sequential(nn.Linear(3, 8), nn.LayerNorm(8), nn.Linear(8, 1)),
                          "head": nn.Linear(3, 1)})


def _loss(model, scale=1.0):
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(1)) * scale
    loss = (model["body"](x) + model["head"](x)).pow(2).mean()
    return loss, {"loss": loss.detach()}


def test_only_the_weights_of_linear_conv_and_lstm_layers_are_decayed():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Embedding(5, 4), nn.LSTM(4, 4),
                          nn.Linear(4, 2))
    decay, no_decay = decay_split(model)
    decayed = {id(p) for p in decay}
    assert decayed == {id(model[0].weight), id(model[3].weight_ih_l0), id(model[3].weight_hh_l0),
                       id(model[4].weight)}
    assert len(decay) + len(no_decay) == len(list(model.parameters()))
    optimizer = make_adamw({"net": (model, 1e-3)}, weight_decay=0.1, eps=1e-8)
    groups = [(g["name"], g["weight_decay"]) for g in optimizer.param_groups]
    assert groups == [("net", 0.1), ("net_no_decay", 0.0)]


def test_linear_warmup_rises_from_zero_to_the_full_rate_then_stays_as_diamonds():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = linear_warmup(optimizer, steps=4)
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 1.0])


def test_optimizer_step_clips_each_group_reports_its_norm_and_steps_the_schedule():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = linear_warmup(optimizer, steps=10)
    optimizer.step()  # no gradients yet, so nothing moves: past the warm-up's first update (rate 0)
    scheduler.step()
    loss, logs = _loss(model, scale=100.0)  # gradients far above the clip
    reference = _model()
    reference_loss, _ = _loss(reference, scale=100.0)
    reference_loss.backward()
    norms = {name: torch.nn.utils.get_total_norm([p.grad for p in reference[name].parameters()])
             for name in ("body", "head")}
    assert all(norm > 1.0 for norm in norms.values())
    before = {name: p.detach().clone() for name, p in model.named_parameters()}

    clip = {"grad_norm_body": (list(model["body"].parameters()), 1.0),
            "grad_norm_head": (list(model["head"].parameters()), 0.5)}
    returned = optimizer_step(loss, logs, [(optimizer, scheduler)], clip)
    assert returned is logs and set(logs) == {"loss", "grad_norm_body", "grad_norm_head"}
    torch.testing.assert_close(logs["grad_norm_body"], norms["body"])  # the norm before clipping
    torch.testing.assert_close(logs["grad_norm_head"], norms["head"])
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in logs.values())
    for name, max_norm in (("body", 1.0), ("head", 0.5)):  # each group clipped to its own norm
        clipped = torch.nn.utils.get_total_norm([p.grad for p in model[name].parameters()])
        assert clipped == pytest.approx(max_norm, rel=1e-4)
    moved = {name: (p.detach() - before[name]).norm() for name, p in model.named_parameters()}
    assert all(step > 0 for step in moved.values())
    assert scheduler.last_epoch == 2 and optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 2 / 10)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_loss_raises_before_any_parameter_changes(bad):
    model = _model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = linear_warmup(optimizer, steps=10)
    clip = {"grad_norm": (list(model.parameters()), 1.0)}
    optimizer_step(*_loss(model), [(optimizer, scheduler)], clip)  # one good update: AdamW has state
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    state = {id(p): {k: v.clone() for k, v in s.items()} for p, s in optimizer.state.items()}
    loss, logs = _loss(model)
    with pytest.raises(FloatingPointError, match=r"loss is (nan|inf) \(logs: \{'loss': "):
        optimizer_step(loss * bad, logs, [(optimizer, scheduler)], clip, check_finite=True)
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, before[name]), name
    for parameter, saved in optimizer.state.items():
        assert all(torch.equal(value, state[id(parameter)][k]) for k, value in saved.items())
    assert scheduler.last_epoch == 1  # the schedule did not advance either
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_without_the_check_a_non_finite_loss_is_applied_and_shows_in_the_logs():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss, logs = _loss(model)
    clip = {"grad_norm": (list(model.parameters()), 1.0)}
    logs = optimizer_step(loss * float("nan"), logs, [(optimizer, None)], clip, check_finite=False)
    assert torch.isnan(logs["grad_norm"])  # the trainer finds it when it reads the logs
    assert not all(torch.isfinite(p).all() for p in model.parameters())


def test_an_update_runs_its_loss_in_its_context_and_steps_each_of_its_optimisers():
    """``Update``: the loss under the caller's context (e.g. autocast), then one step of each optimiser and
    schedule; parameters of no optimiser of the update stay put."""
    model = _model()
    body = torch.optim.SGD(model["body"].parameters(), lr=0.1)
    head = torch.optim.SGD(model["head"].parameters(), lr=0.1)
    schedules = [linear_warmup(body, steps=2), linear_warmup(head, steps=2)]
    entered = []

    class Recording:
        def __enter__(self):
            entered.append(True)

        def __exit__(self, *exc):
            return False

    update = Update(lambda scale: _loss(model, scale), [(body, schedules[0])], {}, context=Recording)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    update(1.0)
    update(1.0)  # the first update runs at the warm-up's rate 0
    assert entered == [True, True]
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, before[name]) == name.startswith("head"), name
    assert schedules[0].last_epoch == 2 and schedules[1].last_epoch == 0
    both = Update(lambda scale: _loss(model, scale), [(body, schedules[0]), (head, schedules[1])], {})
    both(1.0)
    both(1.0)
    assert all(not torch.equal(p, before[name]) for name, p in model.named_parameters())
