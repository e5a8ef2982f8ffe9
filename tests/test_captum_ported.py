"""Cases from Captum's own test suite (``tests/attr/*.py`` of pytorch/captum), run through
``wb.attribute``: Integrated Gradients, saliency, input x gradient, DeepLIFT, DeepLIFT SHAP and
GradientSHAP. Each test names the Captum test it ports. Where Captum's test hard-codes values
(closed forms on hand-set models) they are asserted here; otherwise our result is compared with
Captum's class run in the same test. Everything runs in float64 (Captum's tests use float32),
so exact values are asserted to round-off; quadrature approximations keep Captum's tolerance
and are also compared with Captum's class tightly. Models: ``tests/captum_models.py``."""
from __future__ import annotations

import pytest
import torch
from captum.attr import (
    DeepLift,
    DeepLiftShap,
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    Saliency,
)

import workbench as wb
from captum_models import (
    Clamp,
    LinearMaxPoolLinear,
    PaperExample1,
    PaperExample2,
    PaperExample2Divided,
    PaperExample2Weighted,
    ReLULinear,
    SoftmaxMLP,
    SumClamp,
    ThreeLayer,
    TwoReLUs,
    TwoTanhs,
)

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.usefixtures("float64", "one_thread")]

EXACT = 1e-9  # float64 round-off on values of order 1 to 1000


@pytest.fixture
def float64():
    """Models, literals and Captum's path points in float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def check(ours, expected, atol=EXACT):
    """``ours`` (a tensor or tuple) equals ``expected`` (nested lists, tensors or a tuple)."""
    ours = ours if isinstance(ours, tuple) else (ours,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(ours) == len(expected)
    for a, b in zip(ours, expected):
        b = torch.as_tensor(b, dtype=a.dtype)
        assert a.shape == b.shape, (a.shape, b.shape)
        torch.testing.assert_close(a, b, atol=atol, rtol=0)


def t(values):
    return torch.tensor(values, dtype=torch.float64)


# --- Integrated Gradients: test_integrated_gradients_basic.py -------------------------------

QUADRATURES = ("riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid",
               "gausslegendre")


@pytest.mark.parametrize("quadrature", QUADRATURES)
@pytest.mark.parametrize("model", [PaperExample1, PaperExample2])
def test_ig_multivariable_paper_examples(model, quadrature):
    """_assert_multi_variable: x = (3, 1), baseline 0 -> (1.5, -0.5) within Captum's 0.05; the
    two models (the paper's implementation-invariance example) give the same sums."""
    net = model()
    inputs, baselines = (t([[3.0]]), t([[1.0]])), (0.0, 0.0)
    ours = wb.attribute(net, inputs, "integrated_gradients", baseline=baselines, steps=500,
                        quadrature=quadrature)
    check(ours, ([[1.5]], [[-0.5]]), atol=0.05)
    if quadrature == "riemann_trapezoid":
        return  # Captum's trapezoid weights sum to (n-1)/n (test_agreement_captum.py)
    theirs = IntegratedGradients(net).attribute(inputs, baselines, method=quadrature,
                                                n_steps=500)
    check(ours, theirs, atol=1e-6)  # Captum rounds the step sizes 1/500 to float32


def test_ig_multivariable_without_multiplying_by_inputs():
    """_assert_multi_variable with multiply_by_inputs=False -> (0.5, -0.5)."""
    inputs = (t([[3.0]]), t([[1.0]]))
    ours = wb.attribute(PaperExample1(), inputs, "integrated_gradients", steps=500,
                        quadrature="riemann_right", multiply_by_inputs=False)
    check(ours, ([[0.5]], [[-0.5]]), atol=0.05)


@pytest.mark.parametrize("x, baseline", [(1.0, 0.0), (0.0, 0.0), (-1.0, 1e-5)])
def test_ig_univariable_clamp(x, baseline):
    """_assert_univariable: IG of ``1 - relu(1 - x)`` sums to f(x) - f(baseline) (Captum
    checks the convergence delta < 0.07)."""
    net, inputs = Clamp(), t([[x]])
    ours = wb.attribute(net, inputs, "integrated_gradients", baseline=baseline, steps=500,
                        quadrature="riemann_trapezoid")
    delta = net(inputs) - net(torch.full_like(inputs, baseline))
    check(ours.sum(1, keepdim=True), delta, atol=0.07)
    check(ours, IntegratedGradients(net).attribute(inputs, baseline, n_steps=64,
                                                    method="riemann_trapezoid"), atol=0.07)


def test_ig_multi_argument_tensor_forward_arg():
    """_assert_multi_argument, first case: a per-sample divisor as additional forward arg."""
    net = PaperExample2Divided()
    inputs = (t([[1.5, 2.0, 34.3]]), t([[3.0, 3.5, 23.2]]))
    divisor = torch.arange(1.0, 4.0).reshape(1, 3)
    baselines = (0.0, torch.zeros(1, 3))
    ours = wb.attribute(net, inputs, "integrated_gradients", baseline=baselines,
                        forward_args=divisor, steps=64, quadrature="riemann_right")
    theirs = IntegratedGradients(net).attribute(inputs, baselines, additional_forward_args=divisor,
                                                n_steps=64, method="riemann_right")
    check(ours, theirs)


def test_ig_multi_argument_batched_forward_args():
    """_assert_multi_argument, second case: nd-tensor and int forward args, batch of two."""
    net = PaperExample2Divided()
    inputs = (t([[1.5, 2.0, 34.3], [3.4, 1.2, 2.0]]), t([[3.0, 3.5, 23.2], [2.3, 1.2, 0.3]]))
    args = (torch.arange(1.0, 7.0).reshape(2, 3), 1)
    baselines = (torch.zeros(2, 3), 0.0)
    ours = wb.attribute(net, inputs, "integrated_gradients", baseline=baselines,
                        forward_args=args, steps=64, quadrature="riemann_middle")
    theirs = IntegratedGradients(net).attribute(inputs, baselines, additional_forward_args=args,
                                                n_steps=64, method="riemann_middle")
    check(ours, theirs)
    delta = net(*inputs, *args) - net(*(torch.zeros(2, 3),) * 2, *args)
    check(ours[0].sum(1) + ours[1].sum(1), delta, atol=0.07)


@pytest.mark.parametrize("first_baseline", [0.0, "tensor"])
def test_ig_multi_argument_list_forward_arg(first_baseline):
    """_assert_multi_argument, third and fourth cases: a Python list as forward argument,
    baselines (0, 1e-5) or (zeros(1, 3), 1e-5)."""
    net = PaperExample2Weighted()
    inputs = (t([[1.5, 2.0, 34.3], [3.4, 1.2, 2.0]]), t([[3.0, 3.5, 23.2], [2.3, 1.2, 0.3]]))
    baselines = (torch.zeros(1, 3) if first_baseline == "tensor" else 0.0, 0.00001)
    ours = wb.attribute(net, inputs, "integrated_gradients", baseline=baselines,
                        forward_args=([2, 3], 1), steps=64, quadrature="riemann_left")
    theirs = IntegratedGradients(net).attribute(inputs, baselines,
                                                additional_forward_args=([2, 3], 1),
                                                n_steps=64, method="riemann_left")
    check(ours, theirs)


def test_ig_multi_tensor_input():
    """_assert_multi_tensor_input: two tensors summed inside the model, baseline zeros."""
    net = SumClamp()
    inputs = (t([[1.5, 2.0, 3.3]]), t([[3.0, 3.5, 2.2]]))
    ours = wb.attribute(net, inputs, "integrated_gradients", steps=64,
                        quadrature="riemann_middle")
    check(ours, IntegratedGradients(net).attribute(inputs, n_steps=64, method="riemann_middle"))
    check(ours[0].sum(1) + ours[1].sum(1), net(*inputs) - net(*map(torch.zeros_like, inputs)),
          atol=0.07)


def test_ig_batched_input_per_sample_equals_batch():
    """_assert_batched_tensor_input and _compute_attribution_batch_helper_evaluate: the batch's
    attributions are each sample's own, and agree with Captum."""
    net = ThreeLayer()
    x = t([[1.5, 2.0, 1.3], [0.5, 0.1, 2.3], [1.5, 2.0, 1.3]])
    ours = wb.attribute(net, x, "integrated_gradients", target=0, steps=64,
                        quadrature="riemann_left", batch_size=20)
    for i in range(len(x)):
        check(ours[i:i + 1], wb.attribute(net, x[i:i + 1], "integrated_gradients", target=0,
                                          steps=64, quadrature="riemann_left"))
    check(ours, IntegratedGradients(net).attribute(x, target=0, n_steps=64,
                                                    method="riemann_left"))


def test_ig_batched_multi_input():
    """_assert_batched_tensor_multi_input: ``(x, add_input)`` as two inputs, target 0."""
    net = ThreeLayer()
    inputs = (t([[1.5, 2.1, 1.9], [0.5, 0.0, 0.7], [1.5, 2.1, 1.1]]),
              t([[0.3, 1.9, 2.4], [0.5, 0.6, 2.1], [1.2, 2.1, 0.2]]))
    ours = wb.attribute(net, inputs, "integrated_gradients", target=0, steps=64,
                        quadrature="riemann_right")
    check(ours, IntegratedGradients(net).attribute(inputs, target=0, n_steps=64,
                                                    method="riemann_right"))


def test_ig_without_multiplying_by_inputs_times_inputs():
    """test_batched_input_smoothgrad_wo_mutliplying_by_inputs (noise 0): the 'global'
    attributions times the inputs are the local ones."""
    net = ThreeLayer()
    x = t([[1.5, 2.0, 1.3], [0.5, 0.1, 2.3], [1.5, 2.0, 1.3]])
    plain = wb.attribute(net, x, "integrated_gradients", target=0, steps=500,
                         multiply_by_inputs=False)
    check(plain * x, wb.attribute(net, x, "integrated_gradients", target=0, steps=500))


def test_ig_classification_softmax_target():
    """test_integrated_gradients_classification.py, test_sigmoid_classification-like: a softmax
    model, target class 5 as a 0-d tensor, agreement with Captum."""
    torch.manual_seed(0)
    net = SoftmaxMLP(5, 20, 10).eval()
    x = t([[0.0, 1.0, 2.0, 3.0, 4.0]])
    ours = wb.attribute(net, x, "integrated_gradients", target=torch.tensor(5), steps=64,
                        quadrature="riemann_right")
    check(ours, IntegratedGradients(net).attribute(x, target=torch.tensor(5), n_steps=64,
                                                    method="riemann_right"))


# --- Saliency and InputXGradient: test_saliency.py, test_input_x_gradient.py ----------------

BASIC_INPUT = [1.0, 2.0, 3.0, 0.0, -1.0, 7.0]
BASIC_GRADS = [0.0, 0.0, 0.0, 1.0, 1.0, 0.0]  # d/dx (1 - relu(1 - x)), hand-computed in Captum


def test_saliency_basic_config():
    """get_basic_config: six samples of one feature each; |gradient| (Captum's abs=True)."""
    x = t(BASIC_INPUT)[:, None]
    check(wb.attribute(Clamp(), x, "gradient").abs(), t(BASIC_GRADS)[:, None])


@pytest.mark.xfail(strict=True, raises=ValueError,
                   reason="inputs must have a batch and at least one feature "
                   "dimension: a 1-D tensor of scalars (Captum's get_basic_config) is refused")
def test_saliency_basic_config_one_dimensional_inputs():
    """get_basic_config as Captum writes it: a 1-D input of six scalars."""
    check(wb.attribute(Clamp(), t(BASIC_INPUT), "gradient").abs(), t(BASIC_GRADS))


def _multiargs_config():
    """get_multiargs_basic_config: the weighted paper example, forward args ([2, 3], 1)."""
    inputs = (t([[1.5, 2.0, 34.3], [3.4, 1.2, 2.0]]), t([[3.0, 3.5, 23.2], [2.3, 1.2, 0.3]]))
    return PaperExample2Weighted(), inputs, ([2, 3], 1)


def _autograd(net, inputs, args):
    inputs = tuple(x.clone().requires_grad_() for x in inputs)
    return torch.autograd.grad(net(*inputs, *args).sum(), inputs)


def test_saliency_multiargs_config():
    """test_saliency_test_basic_multi_variable_vanilla: |gradient| of each input."""
    net, inputs, args = _multiargs_config()
    ours = wb.attribute(net, inputs, "gradient", forward_args=args)
    check(tuple(a.abs() for a in ours), tuple(g.abs() for g in _autograd(net, inputs, args)))
    check(tuple(a.abs() for a in ours),
          Saliency(net).attribute(inputs, additional_forward_args=args))


def test_saliency_classification():
    """_saliency_classification_assert: softmax model, target torch.tensor(5)."""
    torch.manual_seed(0)
    net = SoftmaxMLP(5, 20, 10)
    x = t([[0.0, 1.0, 2.0, 3.0, 4.0]])
    ours = wb.attribute(net, x, "gradient", target=torch.tensor(5))
    check(ours.abs(), Saliency(net).attribute(x, target=torch.tensor(5)))


def test_input_x_gradient_basic_config():
    """test_input_x_gradient_test_basic_vanilla: gradient times input."""
    x = t(BASIC_INPUT)[:, None]
    check(wb.attribute(Clamp(), x, "gradient_x_input"), (t(BASIC_GRADS) * t(BASIC_INPUT))[:, None])


def test_input_x_gradient_multiargs_config():
    """test_saliency_test_basic_multi_variable_vanilla (input x gradient file)."""
    net, inputs, args = _multiargs_config()
    ours = wb.attribute(net, inputs, "gradient_x_input", forward_args=args)
    check(ours, tuple(g * x for g, x in zip(_autograd(net, inputs, args), inputs)))
    check(ours, InputXGradient(net).attribute(inputs, additional_forward_args=args))


def test_input_x_gradient_classification():
    """_input_x_gradient_classification_assert: softmax model, target torch.tensor(5)."""
    torch.manual_seed(0)
    net = SoftmaxMLP(5, 20, 10)
    x = t([[0.0, 1.0, 2.0, 3.0, 4.0]])
    check(wb.attribute(net, x, "gradient_x_input", target=torch.tensor(5)),
          InputXGradient(net).attribute(x, target=torch.tensor(5)))


# --- DeepLIFT and DeepLIFT SHAP: test_deeplift_basic.py --------------------------------------

def _summation_to_delta(net, inputs, baselines, ours):
    delta = net(*inputs) - net(*baselines)
    total = sum(a.reshape(len(a), -1).sum(1) for a in ours)
    check(total, delta.reshape(-1))


def test_deeplift_relu_exact_match():
    """test_relu_deeplift_exact_match: x = (1, 2), baseline 0 -> (2, 1), delta 0."""
    net, inputs = TwoReLUs(), (t([[1.0]]), t([[2.0]]))
    ours = wb.attribute(net, inputs, "deeplift_rescale", baseline=(0.0, 0.0))
    check(ours, ([[2.0]], [[1.0]]))
    _summation_to_delta(net, inputs, (t([[0.0]]), t([[0.0]])), ours)


def test_deeplift_relu_exact_match_without_multiplying_by_inputs():
    """test_relu_deeplift_exact_match_wo_mutliplying_by_inputs -> multipliers (2, 0.5)."""
    ours = wb.attribute(TwoReLUs(), (t([[1.0]]), t([[2.0]])), "deeplift_rescale",
                        multiply_by_inputs=False)
    check(ours, ([[2.0]], [[0.5]]))


def test_deeplift_relu_batch():
    """test_relu_deeplift_batch: four equal rows, baselines zero."""
    net = TwoReLUs()
    inputs = (torch.ones(4, 1), torch.full((4, 1), 2.0))
    ours = wb.attribute(net, inputs, "deeplift_rescale", baseline=(torch.zeros(4, 1),) * 2)
    check(ours, (torch.full((4, 1), 2.0), torch.ones(4, 1)))
    check(ours, DeepLift(net).attribute(inputs, (torch.zeros(4, 1),) * 2))


def test_deeplift_tanh():
    """test_tanh_deeplift: x = (-1, -2); summation to delta; agreement with Captum."""
    net, inputs, baselines = TwoTanhs(), (t([[-1.0]]), t([[-2.0]])), (t([[0.0]]), t([[0.0]]))
    ours = wb.attribute(net, inputs, "deeplift_rescale", baseline=baselines)
    _summation_to_delta(net, inputs, baselines, ours)
    check(ours, DeepLift(net).attribute(inputs, baselines))


def test_deeplift_relu_linear():
    """test_relu_linear_deeplift: scalar baselines (0, 1e-4)."""
    net = ReLULinear()
    inputs = (t([[-10.0, 1.0, -5.0]]), t([[3.0, 3.0, 1.0]]))
    ours = wb.attribute(net, inputs, "deeplift_rescale", baseline=(0, 0.0001))
    check(ours, DeepLift(net).attribute(inputs, (0, 0.0001)))
    _summation_to_delta(net, inputs, (torch.zeros(1, 3), torch.full((1, 3), 1e-4)), ours)


@pytest.mark.parametrize("inplace", [False, True])
def test_deeplift_relu_linear_batch(inplace):
    """test_relu_linear_deeplift_batch and ..._compare_inplace: in-place ReLU gives the same."""
    torch.manual_seed(0)
    net = ReLULinear(inplace=inplace)
    inputs = (t([[-10.0, 1.0, -5.0], [2.0, 3.0, 4.0]]), t([[3.0, 3.0, 1.0], [2.3, 5.0, 4.0]]))
    baselines = (torch.zeros(1, 3), torch.rand(1, 3) * 0.001)
    ours = wb.attribute(net, inputs, "deeplift_rescale", baseline=baselines)
    check(ours, DeepLift(ReLULinear()).attribute(inputs, baselines))
    _summation_to_delta(net, inputs, baselines, ours)


def test_deeplift_linear_maxpool_linear():
    """test_lin_maxpool_lin_classification: baselines above the inputs -> the drop lands on
    the baseline's maximum: [[0, 0, 0, -8], [0, -7, 0, 0]]. Captum's max-pooling multiplier is
    ours with ``max_pool="delta"``. The default (the gradient, a documented difference) gives
    the input's own maximum (ties: the first) its (x - x0), which does not sum to the drop."""
    baselines = t([[1, 2, 3, 9], [4, 8, 6, 7]])
    ours = wb.attribute(LinearMaxPoolLinear(), torch.ones(2, 4), "deeplift_rescale", target=0,
                        baseline=baselines, max_pool="delta")
    check(ours, [[0.0, 0.0, 0.0, -8.0], [0.0, -7.0, 0.0, 0.0]])
    default = wb.attribute(LinearMaxPoolLinear(), torch.ones(2, 4), "deeplift_rescale",
                           target=0, baseline=baselines)
    check(default, [[0.0, 0.0, 0.0, 0.0], [-3.0, 0.0, 0.0, 0.0]])


def test_deepliftshap_batch_4d_input():
    """test_relu_deepliftshap_batch_4D_input (and wo_mutliplying_by_inputs: multipliers 2,
    0.5)."""
    net = TwoReLUs()
    inputs = (torch.ones(4, 1, 1, 1), torch.full((4, 1, 1, 1), 2.0))
    baselines = (torch.zeros(4, 1, 1, 1), torch.zeros(4, 1, 1, 1))
    ours = wb.attribute(net, inputs, "deeplift_shap", baselines=baselines)
    check(ours, DeepLiftShap(net).attribute(inputs, baselines))
    check(ours, (torch.full((4, 1, 1, 1), 2.0), torch.ones(4, 1, 1, 1)))
    plain = wb.attribute(net, inputs, "deeplift_shap", baselines=baselines,
                         multiply_by_inputs=False)
    check(plain, (2 * torch.ones(4, 1, 1, 1), 0.5 * torch.ones(4, 1, 1, 1)))


def test_deepliftshap_multi_reference():
    """test_relu_deepliftshap_multi_ref: one input, four zero baselines."""
    net = TwoReLUs()
    inputs = (t([[1.0]]), t([[2.0]]))
    baselines = (torch.zeros(4, 1), torch.zeros(4, 1))
    ours = wb.attribute(net, inputs, "deeplift_shap", baselines=baselines)
    check(ours, ([[2.0]], [[1.0]]))
    check(ours, DeepLiftShap(net).attribute(inputs, baselines))


@pytest.mark.parametrize("inplace", [False, True])
def test_deepliftshap_relu_linear_two_references(inplace):
    """test_relu_linear_deepliftshap_compare_inplace / baselines_as_func: references 0 and 1."""
    net = ReLULinear(inplace=inplace)
    inputs = (t([[-10.0, 1.0, -5.0], [2.0, 3.0, 4.0]]), t([[3.0, 3.0, 1.0], [2.3, 5.0, 4.0]]))
    baselines = (t([[0.0] * 3, [1.0] * 3]), t([[0.0] * 3, [1.0] * 3]))
    ours = wb.attribute(net, inputs, "deeplift_shap", baselines=baselines)
    check(ours, DeepLiftShap(ReLULinear()).attribute(inputs, baselines))
    # DeepLIFT SHAP is the mean of DeepLIFT over the references
    each = [wb.attribute(net, inputs, "deeplift_rescale", baseline=(b1[None], b2[None]))
            for b1, b2 in zip(*baselines)]
    check(ours, tuple((a + b) / 2 for a, b in zip(*each)))


# --- GradientSHAP: test_gradient_shap.py ------------------------------------------------------

class _Linear7(torch.nn.Module):
    """``linear(cat(x1, x2))`` over 3 + 4 features (Captum's ``BasicLinearModel``)."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(7, 1)

    def forward(self, x1, x2):
        return self.linear(torch.cat((x1, x2), dim=-1))


def test_gradient_shap_linear_model_is_exact():
    """test_basic_multi_input: on a linear model every draw has gradient w, so GradientSHAP is
    w * (x - mean of the drawn baselines); with one baseline it is exact and equals Captum's."""
    torch.manual_seed(0)
    net = _Linear7()
    inputs = (torch.randn(2, 3), torch.randn(2, 4))
    baselines = (torch.randn(1, 3), torch.randn(1, 4))
    ours = wb.attribute(net, inputs, "gradient_shap", baselines=baselines, n_samples=20, seed=0)
    w = net.linear.weight[0].detach()
    check(ours, ((inputs[0] - baselines[0]) * w[:3], (inputs[1] - baselines[1]) * w[3:]))
    check(ours, GradientShap(net).attribute(inputs, baselines, n_samples=20, stdevs=0.0))


def test_gradient_shap_without_multiplying_by_inputs():
    """test_basic_multi_input_wo_mutliplying_by_inputs: the plain attributions times (x -
    baseline) are the local ones (one baseline)."""
    torch.manual_seed(1)
    net = _Linear7()
    inputs = (torch.randn(2, 3), torch.randn(2, 4))
    baselines = (torch.randn(1, 3), torch.randn(1, 4))
    local = wb.attribute(net, inputs, "gradient_shap", baselines=baselines, seed=3)
    plain = wb.attribute(net, inputs, "gradient_shap", baselines=baselines, seed=3,
                         multiply_by_inputs=False)
    check(local, tuple(p * (x - b) for p, x, b in zip(plain, inputs, baselines)))
