"""The hand-written mutations of ``benchmarks.mutation``: plausible one-line bugs in the engine,
the rules, the methods, the patterns, the metrics, the similarity metrics, the bases and the
randomization tests.

Each mutation replaces one exact snippet of one file (it must occur exactly once; a refactor
that moves or rewrites the code makes the run report "snippet not found" for that mutant, and
the snippet must then be written against the new code). ``tests`` are the test files run for
the mutant, most likely catcher first (pytest stops at the first failure). ``equivalent``
explains why a mutant cannot change any result; such mutants are reported but left out of the
score.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    key: str
    path: str
    original: str
    replacement: str
    description: str
    tests: tuple[str, ...]
    equivalent: str | None = None


def _tests(*names: str) -> tuple[str, ...]:
    return tuple(f"tests/test_{name}.py" for name in names)


RULES = _tests("rules", "lrp_rules", "engine", "equivalences", "axioms", "agreement_zennit",
               "agreement_captum")
ENGINE = _tests("engine", "rules", "equivalences", "axioms", "agreement_zennit",
                "agreement_captum", "errors", "safety", "layout")
GRADIENTS = _tests("axioms", "agreement_captum", "equivalences", "engine")
PERTURBATION = _tests("axioms", "agreement_captum", "equivalences")
CAM = _tests("agreement_captum", "errors")
PATTERNS = _tests("patterns")
METRICS = _tests("metrics")
METRICS_SUBSETS = _tests("metrics", "subsets")
SIMILARITY = _tests("similarity", "randomization")
BASIS = _tests("basis")
RANDOMIZATION = _tests("randomization")

MUTATIONS: tuple[Mutation, ...] = (
    # -- engine --------------------------------------------------------------------------------
    Mutation(
        "engine-score-mean", "workbench/engine.py",
        "score = output.gather(1, indices[:, None]).sum()",
        "score = output.gather(1, indices[:, None]).mean()",
        "the target scores averaged instead of summed (gradients divided by the batch size)",
        ENGINE),
    Mutation(
        "engine-bn-no-eps", "workbench/engine.py",
        'scale = torch.rsqrt(bound["running_var"] + bound["eps"])',
        'scale = torch.rsqrt(bound["running_var"])',
        "batch-norm merging drops the epsilon under the square root",
        ENGINE),
    Mutation(
        "engine-bn-shift-sign", "workbench/engine.py",
        'shift = -bound["running_mean"] * scale',
        'shift = bound["running_mean"] * scale',
        "batch-norm merging adds the running mean instead of subtracting it",
        ENGINE),
    Mutation(
        "engine-bn-bias-unscaled", "workbench/engine.py",
        "bias = shift if call.bias is None else call.bias * scale + shift",
        "bias = shift if call.bias is None else call.bias + shift",
        "batch-norm merging leaves the preceding layer's bias unscaled",
        ENGINE),
    Mutation(
        "engine-bn-weight-unscaled", "workbench/engine.py",
        "merged = AffineCall(call.inputs, weight, bias, call.forward",
        "merged = AffineCall(call.inputs, call.weight, bias, call.forward",
        "batch-norm merging keeps the unscaled weight",
        ENGINE),
    Mutation(
        "engine-channel-affine-divide", "workbench/engine.py",
        "output = x * weight.view(shape)",
        "output = x / weight.view(shape)",
        "a batch norm on its own divides by its scale instead of multiplying",
        ENGINE),
    Mutation(
        "engine-activation-rule-everywhere", "workbench/engine.py",
        "if rule is None or not rule.applies_to(family):",
        "if rule is None:",
        "activation rules applied to every family (guided backprop on tanh, the ratio on ReLU)",
        ENGINE),
    Mutation(
        "engine-positional-stride-padding", "workbench/engine.py",
        'names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")',
        'names = ("input", "weight", "bias", "padding", "stride", "dilation", "groups")',
        "positional convolution arguments read with stride and padding swapped",
        ENGINE),
    Mutation(
        "engine-matmul-refusal", "workbench/engine.py",
        "if sum(t.requires_grad for t in factors) > 1:",
        "if sum(t.requires_grad for t in factors) > 2:",
        "a matrix product of two input-dependent tensors is no longer refused",
        ENGINE),
    Mutation(
        "engine-divisor-refusal", "workbench/engine.py",
        "        if divisor_dependent:\n",
        "        if False and divisor_dependent:\n",
        "division by an input-dependent tensor is no longer refused",
        ENGINE),
    Mutation(
        "engine-reference-not-advanced", "workbench/engine.py",
        "reference = self.values[self.position]\n        self.position += 1",
        "reference = self.values[0]\n        self.position += 1",
        "DeepLIFT hands every nonlinearity the baseline's first pre-activation",
        ENGINE),
    # -- rules ---------------------------------------------------------------------------------
    Mutation(
        "rules-stabilize-shrinks", "workbench/rules.py",
        "return values + torch.where(values >= 0, step, -step)",
        "return values - torch.where(values >= 0, step, -step)",
        "the stabiliser moves denominators towards zero instead of away from it",
        RULES),
    Mutation(
        "rules-guided-no-clamp", "workbench/rules.py",
        "threshold_backward(grad.clamp(min=0), output, 0)",
        "threshold_backward(grad, output, 0)",
        "guided backprop passes negative gradients (the plain gradient)",
        RULES),
    Mutation(
        "rules-deconvnet-wrong-sign", "workbench/rules.py",
        "        return grad.clamp(min=0)\n",
        "        return grad.clamp(max=0)\n",
        "DeConvNet passes the negative part of the signal",
        RULES),
    Mutation(
        "rules-ratio-without-function", "workbench/rules.py",
        "return grad * function(pre) / stabilize(pre, tiny(pre.dtype))",
        "return grad * pre / stabilize(pre, tiny(pre.dtype))",
        "the LRP ratio rule uses z / z instead of f(z) / z",
        RULES),
    Mutation(
        "rules-ratio-on-leaky-relu", "workbench/rules.py",
        'return family not in ("relu", "leaky_relu")',
        'return family not in ("relu",)',
        "the LRP ratio rule also replaces the derivative of LeakyReLU",
        RULES),
    Mutation(
        "rules-rescale-delta-sign", "workbench/rules.py",
        "delta_in = pre - reference",
        "delta_in = reference - pre",
        "DeepLIFT Rescale divides by z0 - z instead of z - z0",
        RULES),
    Mutation(
        "rules-rescale-tie-zero", "workbench/rules.py",
        "torch.where(delta_in == 0, slope, multiplier, out=multiplier)",
        "torch.where(delta_in == 0, 0 * slope, multiplier, out=multiplier)",
        "DeepLIFT Rescale gives ReLU-like units 0 instead of f'(z0) where z = z0",
        RULES),
    Mutation(
        "rules-rescale-near-tie-exact-only", "workbench/rules.py",
        "small = delta_in.abs_().le_(tiny(pre.dtype))",
        "small = delta_in.abs_().le_(0.0)",
        "DeepLIFT Rescale uses the cancelling difference quotient where |z - z0| is tiny but "
        "not zero (smooth functions)",
        RULES),
    Mutation(
        "rules-epsilon-squared", "workbench/rules.py",
        "denominator = magnitude + self.epsilon",
        "denominator = magnitude + self.epsilon ** 2",
        "LRP-epsilon adds epsilon squared to |z|",
        RULES),
    Mutation(
        "rules-epsilon-hook-divides", "workbench/rules.py",
        "output.register_hook(lambda grad: grad * factor)",
        "output.register_hook(lambda grad: grad / factor)",
        "LRP-epsilon divides the gradient by z / (z + eps) instead of multiplying",
        RULES),
    Mutation(
        "rules-alpha-beta-drops-bias", "workbench/lrp_rules.py",
        'activating = Group((Term("x+", POSITIVE, POSITIVE), Term("x-", NEGATIVE)), self.alpha)',
        'activating = Group((Term("x+", POSITIVE), Term("x-", NEGATIVE)), self.alpha)',
        "LRP-alpha-beta leaves the positive bias out of the activating part",
        RULES),
    Mutation(
        "rules-alpha-beta-beta-sign", "workbench/lrp_rules.py",
        'Term("x-", POSITIVE)), -self.beta)',
        'Term("x-", POSITIVE)), self.beta)',
        "LRP-alpha-beta adds the inhibiting share instead of subtracting it",
        RULES),
    Mutation(
        "rules-alpha-beta-swapped-inputs", "workbench/lrp_rules.py",
        'activating = Group((Term("x+", POSITIVE, POSITIVE), Term("x-", NEGATIVE)), self.alpha)',
        'activating = Group((Term("x-", POSITIVE, POSITIVE), Term("x+", NEGATIVE)), self.alpha)',
        "LRP-alpha-beta gives positive inputs the negative inputs' share and vice versa",
        RULES),
    Mutation(
        "rules-alpha-beta-check", "workbench/lrp_rules.py",
        "if abs(alpha - beta - 1.0) > 1e-9:",
        "if abs(alpha - beta - 1.0) > 1.0:",
        "alpha - beta != 1 (relevance not conserved) is accepted",
        RULES),
    Mutation(
        "rules-conv-gradient-stride-padding", "workbench/rules.py",
        'tupled("stride", 1), tupled("padding", 0),',
        'tupled("padding", 0), tupled("stride", 1),',
        "the convolution's input gradient reads stride and padding swapped",
        ENGINE),
    Mutation(
        "rules-layer-overrides-ignored", "workbench/rules.py",
        "            return self.layer_affine[layer]\n",
        "            return self.affine\n",
        "per-layer rule overrides (and the pattern rules) are ignored",
        RULES + PATTERNS),
    Mutation(
        "rules-inplace-pre-not-copied", "workbench/rules.py",
        "kept_pre = pre.clone() if call.inplace and keeps in _KEEPING_PRE else pre",
        "kept_pre = pre",
        "an in-place activation overwrites the pre-activation its rule keeps",
        ENGINE),
    # -- ops -----------------------------------------------------------------------------------
    Mutation(
        "ops-max-pool-unknown", "workbench/ops.py",
        "F.max_pool1d, F.max_pool2d, F.max_pool3d,",
        "F.max_pool1d, F.max_pool3d,",
        "max_pool2d missing from the max operations (refused as unknown)",
        ENGINE),
    Mutation(
        "ops-inplace-by-prefix", "workbench/ops.py",
        'if op_name(func).endswith("_"):',
        'if op_name(func).startswith("_"):',
        "in-place operations (relu_) not recognised by their name",
        ENGINE),
    Mutation(
        "ops-relu6-unknown", "workbench/ops.py",
        '"hardtanh": (F.hardtanh, F.hardtanh_, F.relu6),',
        '"hardtanh": (F.hardtanh, F.hardtanh_),',
        "ReLU6 missing from the activation families",
        ENGINE),
    # -- methods -------------------------------------------------------------------------------
    Mutation(
        "ig-gauss-weights", "workbench/methods/gradients.py",
        "return (nodes + 1) / 2, weights / 2",
        "return (nodes + 1) / 2, weights",
        "Gauss-Legendre weights not rescaled from [-1, 1] to [0, 1]",
        GRADIENTS),
    Mutation(
        "ig-trapezoid-ends", "workbench/methods/gradients.py",
        "weights[[0, -1]] /= 2",
        "weights[[0, -1]] /= 1",
        "trapezoid rule without halved end weights",
        GRADIENTS),
    Mutation(
        "ig-riemann-left-right", "workbench/methods/gradients.py",
        'offset = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}',
        'offset = {"riemann_left": 1.0, "riemann_middle": 0.5, "riemann_right": 0.0}',
        "left and right Riemann sums swapped",
        GRADIENTS),
    Mutation(
        "ig-no-baseline-factor", "workbench/methods/gradients.py",
        "return (inputs - baseline) * total",
        "return inputs * total",
        "Integrated Gradients multiplies by x instead of x - x0",
        GRADIENTS),
    Mutation(
        "ig-path-from-zero", "workbench/methods/gradients.py",
        "points.mul_(alpha).add_(start)",
        "points.mul_(alpha)",
        "the path starts at zero instead of the baseline",
        GRADIENTS),
    Mutation(
        "smoothgrad-sigma-max", "workbench/methods/gradients.py",
        "return noise * (flat.max(dim=1).values - flat.min(dim=1).values)",
        "return noise * flat.max(dim=1).values",
        "SmoothGrad's noise scaled by the maximum instead of the range",
        GRADIENTS),
    Mutation(
        "smoothgrad-mean-off-by-one", "workbench/methods/gradients.py",
        "return total / n_samples",
        "return total / (n_samples + 1)",
        "SmoothGrad's mean divides by one sample too many",
        GRADIENTS),
    Mutation(
        "gradient-x-input-drops-input", "workbench/methods/gradients.py",
        "return inputs * modified_gradient(model, inputs, target)",
        "return modified_gradient(model, inputs, target)",
        "Gradient x Input returns the gradient",
        GRADIENTS),
    Mutation(
        "deeplift-no-baseline-factor", "workbench/methods/rule_based.py",
        "return (inputs - baseline) * gradient",
        "return inputs * gradient",
        "DeepLIFT multiplies by x instead of x - x0",
        RULES),
    Mutation(
        "lrp-epsilon-option-ignored", "workbench/methods/rule_based.py",
        "def lrp_epsilon_rules(epsilon: float = 1e-6, layer_rules=None) -> Rules:\n"
        "    return Rules(activation=RatioRule(), affine=EpsilonRule(epsilon),",
        "def lrp_epsilon_rules(epsilon: float = 1e-6, layer_rules=None) -> Rules:\n"
        "    return Rules(activation=RatioRule(), affine=EpsilonRule(),",
        "the epsilon option of lrp_epsilon is ignored",
        RULES),
    Mutation(
        "occlusion-window-count", "workbench/methods/perturbation.py",
        "count = math.ceil(max(size - length, 0) / step) + 1",
        "count = math.ceil(max(size - length, 0) / step)",
        "occlusion misses the last window position",
        PERTURBATION),
    Mutation(
        "occlusion-drop-sign", "workbench/methods/perturbation.py",
        "drops = scores.repeat(len(chunk)) - chosen",
        "drops = chosen - scores.repeat(len(chunk))",
        "occlusion reports the rise instead of the drop",
        PERTURBATION),
    Mutation(
        "occlusion-sum-not-mean", "workbench/methods/perturbation.py",
        "counts[where] += 1",
        "counts[where] = 1",
        "occlusion sums over covering windows instead of averaging",
        PERTURBATION),
    Mutation(
        "shapley-cumulative", "workbench/methods/perturbation.py",
        "values[:, order] += (scores[1:] - scores[:-1]).T",
        "values[:, order] += (scores[1:] - scores[:1]).T",
        "Shapley sampling credits each feature the cumulative change, not its marginal one",
        PERTURBATION),
    Mutation(
        "grad-cam-sum-weights", "workbench/methods/cam.py",
        "weights = gradient.mean(dim=spatial, keepdim=True)",
        "weights = gradient.sum(dim=spatial, keepdim=True)",
        "Grad-CAM's channel weights summed instead of averaged over positions",
        CAM),
    Mutation(
        "grad-cam-no-relu", "workbench/methods/cam.py",
        "return F.relu(cam) if relu_attributions else cam",
        "return cam",
        "Grad-CAM without the final ReLU",
        CAM),
    Mutation(
        "grad-cam-first-conv", "workbench/methods/cam.py",
        "return convolutions[-1]",
        "return convolutions[0]",
        "Grad-CAM's default layer is the first convolution instead of the last",
        CAM),
    Mutation(
        "pattern-method-no-output-factor", "workbench/methods/pattern.py",
        "return scores.view(-1, *[1] * (inputs.dim() - 1)) * gradient",
        "return gradient",
        "PatternNet/PatternAttribution start from 1 instead of the output y",
        PATTERNS),
    # -- patterns ------------------------------------------------------------------------------
    Mutation(
        "patterns-backward-with-a-minus", "workbench/patterns.py",
        "Rules(layer_affine={name: PatternRule(p.positive, mode)",
        "Rules(layer_affine={name: PatternRule(p.negative, mode)",
        "PatternNet/PatternAttribution backpropagate with a_- instead of a_+ (S_a+-)",
        PATTERNS),
    Mutation(
        "patterns-rho-clamp-negative", "workbench/patterns.py",
        "results[i] = ((v @ held_dy) / spread.sqrt()).clamp(0, 1)",
        "results[i] = ((v @ held_dy) / spread.sqrt()).clamp(-1, 1)",
        "signal_quality clamps the cross-fitted correlation to [-1, 1] (rho above 1)",
        PATTERNS),
    Mutation(
        "patterns-regime-without-bias", "workbench/patterns.py",
        "active = (y + (bias.double() if bias is not None else 0)) > 0",
        "active = y > 0",
        "the regimes of S_a+- ignore the bias (w^T x > 0 instead of w^T x + b > 0)",
        PATTERNS),
    Mutation(
        "patterns-uncentred-covariance", "workbench/patterns.py",
        "covariance = sum_xy / n - (sum_x / n) * mean_y",
        "covariance = sum_xy / n",
        "the pattern regression uses E[x y] instead of the covariance",
        PATTERNS),
    Mutation(
        "patterns-negative-regime-uses-all", "workbench/patterns.py",
        "m.sum_xy - m.sum_xy_pos, mean_y, matrix)",
        "m.sum_xy, mean_y, matrix)",
        "a_- takes E[x y] over all samples instead of the inactive ones",
        PATTERNS),
    Mutation(
        "patterns-w-estimator-axis", "workbench/patterns.py",
        "positive = negative = matrix / (matrix * matrix).sum(1, keepdim=True)",
        "positive = negative = matrix / (matrix * matrix).sum(0, keepdim=True)",
        "S_w normalises each input over the neurons instead of each neuron's filter",
        PATTERNS),
    Mutation(
        "patterns-net-attribution-swapped", "workbench/patterns.py",
        'backward_weight = pattern if self.mode == "net" else call.weight * pattern',
        'backward_weight = call.weight * pattern if self.mode == "net" else pattern',
        "PatternNet and PatternAttribution swapped",
        PATTERNS),
    Mutation(
        "patterns-conv-stride-padding", "workbench/patterns.py",
        'stride, padding, dilation = pair("stride", 1), pair("padding", 0), pair("dilation", 1)',
        'stride, padding, dilation = pair("padding", 0), pair("stride", 1), pair("dilation", 1)',
        "convolution patches unfolded with stride and padding swapped",
        PATTERNS),
    Mutation(
        "patterns-rho-cov-dy-sign", "workbench/patterns.py",
        "(mean_yy - mean_yy_pos) * a_neg - mean_d * mean_y",
        "(mean_yy - mean_yy_pos) * a_neg + mean_d * mean_y",
        "Cov(d, y) adds E[d] E[y] instead of subtracting it",
        PATTERNS),
    Mutation(
        "patterns-rho-one-fold", "workbench/patterns.py",
        "rho = 1 - (correlation[0] + correlation[1]) / 2",
        "rho = 1 - correlation[0]",
        "signal_quality uses one cross-fitting direction instead of the average of both",
        PATTERNS),
    Mutation(
        "patterns-yy-pos-squared", "workbench/patterns.py",
        'self.sum_yy_pos += (y_pos * y).sum(0)',
        'self.sum_yy_pos += (y_pos * y_pos).sum(0)',
        "the active-regime second moment of y written as y_+ y_+ instead of y_+ y",
        PATTERNS,
        equivalent="y_pos = y * 1[active], so y_pos * y_pos = y^2 * 1[active] = y_pos * y "
                   "exactly (the mask is 0 or 1)"),
    # -- metrics -------------------------------------------------------------------------------
    Mutation(
        "metrics-pearson-clamp-zero", "workbench/metrics.py",
        'correlation = correlation.clamp(-1.0, 1.0).masked_fill(constant, float("nan"))',
        'correlation = correlation.clamp(0.0, 1.0).masked_fill(constant, float("nan"))',
        "Sensitivity-n clamps negative correlations to 0",
        METRICS),
    Mutation(
        "metrics-pearson-uncentred", "workbench/metrics.py",
        "b = drops - drops.mean(-1, keepdim=True)",
        "b = drops",
        "Sensitivity-n's correlation does not centre the output drops",
        METRICS),
    Mutation(
        "metrics-subsets-complement-boundary", "workbench/subsets.py",
        "complement = 2 * size > total",
        "complement = 2 * size >= total",
        "the subset draw switches to drawing the complement one size earlier",
        METRICS_SUBSETS),
    Mutation(
        "metrics-subsets-fallback-ignored", "workbench/subsets.py",
        "return torch.where(fallback, steps + base, candidates), complement",
        "return candidates, complement",
        "Floyd's algorithm keeps repeated candidates instead of falling back (subsets with "
        "fewer than n distinct features)",
        METRICS_SUBSETS),
    Mutation(
        "metrics-subsets-chain-not-followed", "workbench/subsets.py",
        "            return repeated.gather(1, pointer)",
        "            return repeated",
        "a candidate taken earlier as another step's fallback is not seen as taken",
        METRICS_SUBSETS),
    Mutation(
        "metrics-sensitivity-drop-sign", "workbench/metrics.py",
        "drops = scores[drawn, None].to(torch.float64) - outputs[drawn].to(torch.float64)",
        "drops = outputs[drawn].to(torch.float64) - scores[drawn, None].to(torch.float64)",
        "Sensitivity-n correlates with the rise instead of the drop",
        METRICS),
    Mutation(
        "metrics-sensitivity-keeps-subset", "workbench/metrics.py",
        "kept, removed = (flat_baseline, flat_inputs) if complement else (",
        "kept, removed = (flat_inputs, flat_baseline) if complement else (",
        "Sensitivity-n keeps the subset and removes everything else for n > G / 2",
        METRICS),
    Mutation(
        "metrics-aopc-skips-start", "workbench/metrics.py",
        "return (self.curve[:, :1] - self.curve).mean(dim=1)",
        "return (self.curve[:, :1] - self.curve[:, 1:]).mean(dim=1)",
        "AOPC averages over L instead of L + 1 points",
        METRICS),
    Mutation(
        "metrics-area-ends", "workbench/metrics.py",
        "(curve[:, 0] + curve[:, -1]) / 2) / steps",
        "(curve[:, 0] + curve[:, -1])) / steps",
        "the trapezoid area without halved end points",
        METRICS),
    Mutation(
        "metrics-degradation-off-by-one", "workbench/metrics.py",
        "removed = torch.gt(done.view(1, -1, 1, 1, 1), position[samples, None],",
        "removed = torch.ge(done.view(1, -1, 1, 1, 1), position[samples, None],",
        "degradation removes one region more than the step says",
        METRICS),
    Mutation(
        "metrics-degradation-zero-off-by-one", "workbench/metrics.py",
        "kept = torch.le(done.view(1, -1, 1, 1, 1), position[samples, None],",
        "kept = torch.lt(done.view(1, -1, 1, 1, 1), position[samples, None],",
        "degradation by zeros keeps one region fewer than the step says",
        METRICS),
    Mutation(
        "views-rows-spread-by-sample", "workbench/model_views.py",
        "return value.index_select(0, samples.to(value.device))",
        "return value.index_select(0, samples.to(value.device).sort().values)",
        "a layer view gives the batch's rows the samples in sorted order, not their own",
        _tests("model_views")),
    Mutation(
        "metrics-blur-radius-floor", "workbench/image_filters.py",
        "radius = int(3 * sigma + 0.5)",
        "radius = int(3 * sigma)",
        "the blur kernel radius truncated instead of rounded",
        METRICS),
    Mutation(
        "metrics-blur-replicate", "workbench/image_filters.py",
        'out = F.pad(images, (radius, radius, radius, radius), mode="reflect")',
        'out = F.pad(images, (radius, radius, radius, radius), mode="replicate")',
        "the blur repeats the edge pixel instead of mirroring",
        METRICS),
    Mutation(
        "metrics-mean-replacement-axis", "workbench/metrics.py",
        "means = blocks.mean(dim=(3, 5), keepdim=True).expand_as(blocks)",
        "means = blocks.mean(dim=(2, 4), keepdim=True).expand_as(blocks)",
        "the mean replacement averages over the patch grid instead of within each patch",
        METRICS),
    # -- similarity ----------------------------------------------------------------------------
    Mutation(
        "similarity-pearson-clamp-zero", "workbench/similarity.py",
        "return correlation.clamp(-1.0, 1.0).masked_fill(norms == 0, float(\"nan\"))",
        "return correlation.clamp(0.0, 1.0).masked_fill(norms == 0, float(\"nan\"))",
        "negative similarity correlations clamped to 0",
        SIMILARITY),
    Mutation(
        "similarity-ranks-ignore-ties", "workbench/similarity.py",
        "starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]",
        "starts[:, 1:] = True",
        "tied values get ordinal ranks instead of their average rank",
        SIMILARITY),
    Mutation(
        "similarity-ssim-population-variance", "workbench/similarity.py",
        "covariance_norm = win_size ** 2 / (win_size ** 2 - 1)",
        "covariance_norm = 1.0",
        "SSIM with population instead of sample variances",
        SIMILARITY),
    Mutation(
        "similarity-ssim-constants-swapped", "workbench/similarity.py",
        "c1, c2 = 0.01 ** 2, 0.03 ** 2",
        "c1, c2 = 0.03 ** 2, 0.01 ** 2",
        "SSIM's stabilising constants swapped",
        SIMILARITY),
    Mutation(
        "similarity-hog-clip", "workbench/similarity.py",
        "blocks = blocks.clamp(max=0.2)",
        "blocks = blocks.clamp(max=0.3)",
        "HOG's L2-Hys clips at 0.3 instead of 0.2",
        SIMILARITY),
    Mutation(
        "similarity-hog-angle-transposed", "workbench/similarity.py",
        "angle = torch.atan2(gradient_rows, gradient_cols) * (180 / np.pi) % 180",
        "angle = torch.atan2(gradient_cols, gradient_rows) * (180 / np.pi) % 180",
        "HOG's orientation measured from the other axis",
        SIMILARITY),
    Mutation(
        "similarity-sobel-no-half", "workbench/similarity.py",
        "magnitude = gradients.pow(2).sum(dim=1).div(2).sqrt()",
        "magnitude = gradients.pow(2).sum(dim=1).sqrt()",
        "the Sobel magnitude without the division by 2",
        SIMILARITY),
    Mutation(
        "similarity-signed-when-absolute", "workbench/similarity.py",
        "    if absolute:\n        maps = maps.abs()",
        "    if absolute:\n        maps = maps",
        "the absolute maps keep their signs",
        SIMILARITY),
    # -- basis ---------------------------------------------------------------------------------
    Mutation(
        "basis-merge-weight", "workbench/basis.py",
        "torch.outer(delta, delta) * (\n            self.count * n / total)",
        "torch.outer(delta, delta) * (\n            n / total)",
        "the streaming scatter merge weights the mean difference by n / N instead of n m / N",
        BASIS),
    Mutation(
        "basis-covariance-population", "workbench/basis.py",
        "return self.scatter / (self.count - 1)",
        "return self.scatter / self.count",
        "the covariance divides by n instead of n - 1",
        BASIS),
    Mutation(
        "basis-pca-ascending", "workbench/basis.py",
        "order = eigenvalues.argsort(descending=True, stable=True)",
        "order = eigenvalues.argsort(descending=False, stable=True)",
        "principal components ordered by increasing variance",
        BASIS),
    Mutation(
        "basis-no-sign-convention", "workbench/basis.py",
        "directions = directions * directions.gather(1, largest).sign()",
        "directions = directions",
        "principal directions keep eigh's arbitrary signs",
        BASIS),
    Mutation(
        "basis-variance-off-by-one", "workbench/basis.py",
        "return float(basis.variances[:k].sum() / basis.total_variance)",
        "return float(basis.variances[:k + 1].sum() / basis.total_variance)",
        "variance_explained counts k + 1 directions",
        BASIS),
    Mutation(
        "basis-restrict-no-centre", "workbench/basis.py",
        "restricted = (centre + codes @ directions).to(output.dtype)",
        "restricted = (codes @ directions).to(output.dtype)",
        "the restricted activations are not moved back to the centre",
        BASIS),
    Mutation(
        "basis-bottom-zero", "workbench/basis.py",
        'torch.arange(k) if r.keep == "top" else torch.arange(m - k, m)',
        'torch.arange(k) if r.keep == "top" else torch.arange(m)[-k:]',
        "keep='bottom' with k = 0 keeps every direction instead of none",
        BASIS),
    Mutation(
        "basis-rows-without-movedim", "workbench/basis.py",
        "last = features_last(output, spatial)\n    return last.reshape(-1, last.shape[-1])",
        "return output.reshape(-1, output.shape[1])",
        "conv activations reshaped into rows without moving the channels last",
        BASIS),
    # -- randomization -------------------------------------------------------------------------
    Mutation(
        "randomization-cascade-bottom-up", "workbench/randomization.py",
        "for index in reversed(range(len(resolved))):",
        "for index in range(len(resolved)):",
        "the cascade starts at the first layer instead of the logits",
        RANDOMIZATION),
    Mutation(
        "randomization-cascade-not-cumulative", "workbench/randomization.py",
        "yield _label(name), _with_layers_replaced(model, states)",
        "yield _label(name), _with_layers_replaced(model, {name: state})",
        "cascading randomization re-initialises one layer per stage",
        RANDOMIZATION),
    Mutation(
        "randomization-one-seed-for-all-layers", "workbench/randomization.py",
        "return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])",
        "return int(np.random.SeedSequence([seed]).generate_state(1)[0])",
        "every layer re-initialised from the same seed",
        RANDOMIZATION),
    Mutation(
        "randomization-truncation-one-sigma", "workbench/randomization.py",
        "std=0.01, a=-0.02, b=0.02",
        "std=0.01, a=-0.01, b=0.01",
        "the truncated normal cut at one standard deviation instead of two",
        RANDOMIZATION),
    Mutation(
        "randomization-labels-not-permuted", "workbench/models.py",
        "permuted = data.y_train[torch.randperm(len(data.y_train), generator=generator)]",
        "permuted = data.y_train",
        "the data randomization test trains on the true labels",
        RANDOMIZATION),
)
