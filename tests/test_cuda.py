"""The functional core gives the same answers on CUDA tensors as on the CPU (skipped without a GPU)."""
import pytest
import torch

from fastai_aum.functional import aum, aum_directional_derivatives, auroc

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("shape", [(1000,), (1000, 2), (1000, 5)])
def test_same_as_cpu(shape):
    g = torch.Generator().manual_seed(0)
    preds = torch.randint(-5, 5, shape, generator=g).float()  # heavy ties
    target = torch.randint(0, 2 if len(shape) == 1 or shape[1] == 2 else shape[1], (shape[0],), generator=g)
    cpu_x = preds.clone().requires_grad_()
    gpu_x = preds.cuda().requires_grad_()
    torch.testing.assert_close(auroc(gpu_x.detach(), target.cuda()).cpu(), auroc(cpu_x.detach(), target))
    cpu_v, gpu_v = aum(cpu_x, target), aum(gpu_x, target.cuda())
    torch.testing.assert_close(gpu_v.cpu(), cpu_v)
    cpu_v.backward()
    gpu_v.backward()
    torch.testing.assert_close(gpu_x.grad.cpu(), cpu_x.grad)
    if len(shape) == 1:
        torch.testing.assert_close(aum_directional_derivatives(gpu_x.detach(), target.cuda()).cpu(),
                                   aum_directional_derivatives(cpu_x.detach(), target))


def test_half_precision_on_cuda():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4096, generator=g)
    y = torch.rand(4096, generator=g) < 0.2
    half = x.half().cuda()
    torch.testing.assert_close(auroc(half, y.cuda()).cpu(), auroc(half.float().cpu(), y))
    torch.testing.assert_close(aum(half, y.cuda()).float().cpu(), aum(half.float().cpu(), y), rtol=1e-5, atol=1e-6)


def test_no_host_device_sync_per_batch():
    """The callback's accumulation and a binary AUMLossFlat(validate=False) run without a sync."""
    from fastai_aum import AUMLossFlat
    from fastai_aum.callback import AUROC
    g = torch.Generator().manual_seed(2)
    preds = torch.randint(-3, 3, (512, 2), generator=g).float().cuda()  # ties: the tie path runs too
    target = (torch.rand(512, generator=g) < 0.3).long().cuda()
    metric, loss_func = AUROC(), AUMLossFlat(validate=False)
    x = preds.clone().requires_grad_()
    torch.cuda.set_sync_debug_mode("error")
    try:
        metric.add(preds, target)
        loss_func(x, target).backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert metric.value == pytest.approx(auroc(preds.cpu(), target.cpu()).item())
    cpu_x = preds.cpu().requires_grad_()
    AUMLossFlat()(cpu_x, target.cpu()).backward()
    torch.testing.assert_close(x.grad.cpu(), cpu_x.grad)


@pytest.mark.parametrize("shape, average", [((512,), "micro"), ((512, 1), "micro"), ((512, 2), "micro"),
                                            ((512, 5), "micro"), ((512, 5), "macro")])
def test_default_loss_never_syncs(shape, average):
    """`AUMLossFlat()` with default arguments (validate=True): no sync per batch, forward and backward,
    NaN outputs included; a multiclass loss finds out once, before, whether its outputs are probabilities."""
    from fastai_aum import AUMLossFlat
    g = torch.Generator().manual_seed(3)
    k = shape[1] if len(shape) == 2 and shape[1] > 2 else 2
    target = (torch.arange(shape[0]) % k).cuda()
    loss = AUMLossFlat(average=average)
    loss(torch.randn(*shape, generator=g).cuda(), target)
    preds = torch.randint(-3, 3, shape, generator=g).float().cuda()
    x = preds.clone().requires_grad_()
    torch.cuda.set_sync_debug_mode("error")
    try:
        value = loss(x, target)
        value.backward()
        nan_value = loss(preds * float("nan"), target)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert value.item() == pytest.approx(aum(preds.cpu(), target.cpu(), average=average).item(), abs=1e-6)
    assert torch.isnan(nan_value).item()
