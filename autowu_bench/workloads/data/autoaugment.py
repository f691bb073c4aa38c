"""AutoAugment's CIFAR-10 policy (Cubuk et al., CVPR 2019), batched with per-sample random choices.

Every image draws its own sub-policy (one of 25 pairs of operations), then each of the pair's two
operations fires with its probability and, for signed operations, a random sign. Grouping images by
operation would need a host synchronisation per group on a GPU, so every slot runs the whole batch
through one instance of each *family* of operations, with per-sample parameters gathered from tables
built once per image size and device, and keeps each image's own result (``torch.where``):

- geometric (shear, translate, rotate): one ``grid_sample`` with a per-sample affine matrix;
- enhancement (brightness, color, contrast, sharpness): PIL's blend ``d + f (x - d)`` once, with the
  degenerate image ``d`` chosen per sample (black, grey, mean grey, smoothed);
- bitwise (posterize, solarize, invert): ``x & mask`` then ``x >= threshold ? 255 - x : x`` with a
  per-sample mask and threshold (invert is solarize at 0; 255 and 256 leave an image unchanged);
- autocontrast and equalize, each once.

Computing each of the 14 operations for the whole batch instead launched 445 kernels per batch of any
size against about 190 now, and a GPU input pipeline at small batches is bound by those launches.

Magnitudes follow the usual 10-bin discretisation (bin m of 0..9): shear 0.3 m/9, translate
(150/331) * width (height for TranslateY) * m/9 pixels, rotate 30 m/9 degrees, enhancement factors
1 +- 0.9 m/9, posterize 8 - round(4 m/9) bits, solarize threshold 255 (1 - m/9). Geometric operations
use nearest interpolation about the image centre and fill with grey (128), as the original code did.
The pixel operations round and clamp as torchvision's uint8 tensor kernels do (tests compare them).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

# (operation, probability, magnitude bin or None), two per sub-policy: Cubuk et al. 2019, CIFAR-10 policy.
CIFAR10_POLICY: tuple[tuple[tuple[str, float, int | None], tuple[str, float, int | None]], ...] = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)

OPS = (
    "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate",
    "Brightness", "Color", "Contrast", "Sharpness",
    "Posterize", "Solarize", "AutoContrast", "Equalize", "Invert",
)  # fmt: skip
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
SIGNED = GEOMETRIC + ("Brightness", "Color", "Contrast", "Sharpness")
FILL = 128.0


def magnitude(op: str, bin_: int | None, height: int, width: int) -> float:
    """The unsigned magnitude of ``op`` at ``bin_`` (0..9) for images of ``height`` x ``width``."""
    if bin_ is None:
        return 0.0
    f = bin_ / 9.0
    if op in ("ShearX", "ShearY"):
        return 0.3 * f
    if op == "TranslateX":
        return 150.0 / 331.0 * width * f
    if op == "TranslateY":
        return 150.0 / 331.0 * height * f
    if op == "Rotate":
        return 30.0 * f
    if op in ("Brightness", "Color", "Contrast", "Sharpness"):
        return 0.9 * f
    if op == "Posterize":
        return float(int(round(8 - 4 * f)))
    if op == "Solarize":
        return 255.0 * (1.0 - f)
    raise ValueError(f"operation {op!r} has no magnitude; known: {', '.join(OPS)}")



ENHANCE = ("Brightness", "Color", "Contrast", "Sharpness")  # index = which degenerate image
GEO, ENH, BITS, AUTOCONTRAST, EQUALIZE, NOOP = range(6)
FAMILY = {
    **dict.fromkeys(GEOMETRIC, GEO), **dict.fromkeys(ENHANCE, ENH), **dict.fromkeys(("Posterize", "Solarize", "Invert"), BITS),
    "AutoContrast": AUTOCONTRAST, "Equalize": EQUALIZE,
}  # fmt: skip


class OpParams(NamedTuple):
    """Per-sample parameters of one operation each, for every family (a family ignores the others').

    ``family`` selects the result; ``theta`` is the affine matrix of ``grid_sample`` (identity unless
    geometric), ``which``/``factor`` the enhancement's degenerate image and blend factor, ``mask``/
    ``threshold`` the bitwise operation (255 and 256 leave the image unchanged)."""

    family: torch.Tensor  # [B] long
    theta: torch.Tensor  # [B, 2, 3] float
    which: torch.Tensor  # [B] long
    factor: torch.Tensor  # [B] float
    mask: torch.Tensor  # [B] uint8
    threshold: torch.Tensor  # [B] float

    def rows(self, index: torch.Tensor) -> OpParams:
        return OpParams(*(t[index] for t in self))


def _op_row(op: str | None, mag: float, height: int, width: int) -> tuple:
    """One row of :class:`OpParams` for ``op`` at signed magnitude ``mag`` (None: leave the image as is)."""
    a, t = [[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0]  # input pixel = a @ output pixel + t, in pixels about the centre
    which, factor, mask, threshold = 0, 1.0, 255, 256.0
    if op == "ShearX":
        a[0][1] = mag
    elif op == "ShearY":
        a[1][0] = mag
    elif op == "Rotate":
        c, s = math.cos(math.radians(mag)), math.sin(math.radians(mag))
        a = [[c, -s], [s, c]]
    elif op == "TranslateX":
        t[0] = -mag
    elif op == "TranslateY":
        t[1] = -mag
    elif op in ENHANCE:
        which, factor = ENHANCE.index(op), 1.0 + mag
    elif op == "Posterize":
        mask = 255 - (2 ** (8 - min(max(int(mag), 1), 8)) - 1)
    elif op == "Solarize":
        threshold = mag
    elif op == "Invert":
        threshold = 0.0
    # pixel offsets from the centre -> normalised coordinates (align_corners=False): x_n = x_px / (W / 2),
    # so a_n[i][j] = a[i][j] * s_j / s_i and t_n[i] = t[i] / s_i with s = (W / 2, H / 2)
    s = (width / 2.0, height / 2.0)
    theta = [[a[i][j] * s[j] / s[i] for j in range(2)] + [t[i] / s[i]] for i in range(2)]
    return FAMILY.get(op, NOOP), theta, which, factor, mask, threshold


def _stack_rows(rows: list[tuple], device: torch.device) -> OpParams:
    family, theta, which, factor, mask, threshold = zip(*rows)
    return OpParams(
        torch.tensor(family, device=device),
        torch.tensor(theta, device=device, dtype=torch.float32),
        torch.tensor(which, device=device),
        torch.tensor(factor, device=device, dtype=torch.float32),
        torch.tensor(mask, device=device, dtype=torch.uint8),
        torch.tensor(threshold, device=device, dtype=torch.float32),
    )


@functools.lru_cache(maxsize=16)
def _policy_tables(height: int, width: int, device: torch.device) -> tuple[OpParams, torch.Tensor]:
    """The policy's operations as :class:`OpParams` rows ``4 * sub-policy + 2 * slot + negative``, with a
    last no-op row, and each row's probability; built once per image size and device (a host-to-device
    copy per batch would stall the GPU pipeline)."""
    rows, probs = [], []
    for pair in CIFAR10_POLICY:
        for op, prob, bin_ in pair:
            mag = magnitude(op, bin_, height, width)
            for negative in (False, True):
                rows.append(_op_row(op, -mag if negative and op in SIGNED else mag, height, width))
                probs.append(prob)
    rows.append(_op_row(None, 0.0, height, width))
    return _stack_rows(rows, device), torch.tensor(probs, device=device)


def _warp(x: torch.Tensor, xf: torch.Tensor, theta: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
    """Each image through its own affine map, in one grid_sample; images where ``moved`` is False are kept.
    Nearest sampling returns input values or the zero padding, so the shifted result is exact in uint8."""
    b, _, h, w = x.shape
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    out = F.grid_sample(xf - FILL, grid, mode="nearest", padding_mode="zeros", align_corners=False) + FILL
    return torch.where(moved[:, None, None, None], out.to(torch.uint8), x)


def _grey(xf: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma, floored as torchvision's uint8 grayscale, ``[B, 1, H, W]``."""
    return (0.2989 * xf[:, 0:1] + 0.587 * xf[:, 1:2] + 0.114 * xf[:, 2:3]).floor()


def _smooth(xf: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH filter (3x3, centre weight 5, sum 13), rounded, with the one-pixel border left as is.
    The 3x3 sum is exact in float32, and an integer over 13 is never halfway, so the rounding is exact."""
    box = F.avg_pool2d(xf, 3, stride=1, divisor_override=1)
    return F.pad(((box + 4.0 * xf[:, :, 1:-1, 1:-1]) / 13.0).round() - xf[:, :, 1:-1, 1:-1], (1, 1, 1, 1)) + xf


def _enhance(xf: torch.Tensor, which: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance: ``d + factor * (x - d)``, clamped and truncated, with the degenerate image ``d``
    per sample: black (brightness), grey (color), mean grey (contrast) or smoothed (sharpness)."""
    grey = _grey(xf)
    w = which[:, None, None, None]
    degenerate = torch.where(
        w == ENHANCE.index("Sharpness"), _smooth(xf),
        torch.where(w == ENHANCE.index("Color"), grey, torch.where(w == ENHANCE.index("Contrast"), grey.mean(dim=(1, 2, 3), keepdim=True), 0.0)),
    )  # fmt: skip
    out = torch.lerp(degenerate, xf, factor.view(-1, 1, 1, 1))
    return out.clamp(0, 255).to(torch.uint8)


def _bitwise(x: torch.Tensor, mask: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Posterize (keep the bits of ``mask``), then solarize (invert pixels >= ``threshold``)."""
    y = x & mask.view(-1, 1, 1, 1)
    return torch.where(y >= threshold.view(-1, 1, 1, 1), 255 - y, y)


def _autocontrast(xf: torch.Tensor) -> torch.Tensor:
    lo = xf.amin(dim=(2, 3), keepdim=True)
    hi = xf.amax(dim=(2, 3), keepdim=True)
    span = hi - lo
    scaled = ((xf - lo) * (255.0 / span.clamp(min=1.0))).clamp(0, 255).floor()
    return torch.where(span > 0, scaled, xf).to(torch.uint8)


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """PIL's ImageOps.equalize per image and channel, batched through a histogram per (image, channel)."""
    b, c, h, w = x.shape
    flat = x.reshape(b * c, h * w).long()
    hist = torch.zeros(b * c, 256, device=x.device, dtype=torch.long).scatter_add_(1, flat, torch.ones_like(flat))
    last = 255 - (hist.flip(1) > 0).long().argmax(1, keepdim=True)
    step = (h * w - hist.gather(1, last)) // 255
    before = hist.cumsum(1) - hist
    lut = ((before + step // 2) // step.clamp(min=1)).clamp(0, 255)
    lut = torch.where(step > 0, lut, torch.arange(256, device=x.device).expand(b * c, 256))
    return lut.gather(1, flat).to(torch.uint8).view(b, c, h, w)


def apply_ops(x: torch.Tensor, p: OpParams) -> torch.Tensor:
    """Each image of a uint8 batch through its own operation: every family runs once on the whole batch
    and each image keeps its family's result. Pure tensor code: no host synchronisation, no
    data-dependent shapes, so the GPU never waits for the host."""
    family = p.family[:, None, None, None]
    xf = x.float()
    y = _warp(x, xf, p.theta, p.family == GEO)
    y = _bitwise(y, p.mask, p.threshold)  # the identity for rows of other families
    y = torch.where(family == ENH, _enhance(xf, p.which, p.factor), y)
    y = torch.where(family == AUTOCONTRAST, _autocontrast(xf), y)
    return torch.where(family == EQUALIZE, _equalize(x), y)


def apply_op(name: str, x: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    """Apply operation ``name`` to every image of a uint8 batch, with per-sample (signed) magnitudes ``mag``."""
    if name not in FAMILY:
        raise ValueError(f"unknown operation {name!r}; known: {', '.join(OPS)}")
    h, w = x.shape[-2:]
    return apply_ops(x, _stack_rows([_op_row(name, m, h, w) for m in mag.tolist()], x.device))


def apply_policy(
    x: torch.Tensor, pick: torch.Tensor, u_fire: torch.Tensor, u_sign: torch.Tensor, tables: tuple[OpParams, torch.Tensor]
) -> torch.Tensor:
    """The policy given its random draws: ``pick`` [B] sub-policy index, ``u_fire`` and ``u_sign`` [2, B]
    uniforms deciding whether each slot's operation fires and its sign (for signed operations)."""
    params, probs = tables
    noop = len(probs)
    for slot in range(2):
        row = 4 * pick + 2 * slot
        fired = u_fire[slot] < probs[row]
        row = torch.where(fired, row + (u_sign[slot] < 0.5).long(), noop)
        x = apply_ops(x, params.rows(row))
    return x


CPU_CHUNK = 256  # images per pass on the CPU: a 4096 batch's float intermediates (50 MB each) miss the caches


def cifar10_autoaugment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Apply the CIFAR-10 AutoAugment policy to a uint8 RGB batch ``[B, 3, H, W]``, each image on its own.

    On the CPU the batch goes through in chunks of ``CPU_CHUNK`` images (2.9x the images/s of one pass at
    batch 4096 on 2 cores); the draws are made for the whole batch first, so the result is the same."""
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"AutoAugment expects a uint8 RGB batch [B, 3, H, W], got {x.dtype} {tuple(x.shape)}")
    b, dev = x.shape[0], x.device
    pick = torch.randint(0, len(CIFAR10_POLICY), (b,), generator=generator, device=dev)
    u_fire = torch.rand(2, b, generator=generator, device=dev)
    u_sign = torch.rand(2, b, generator=generator, device=dev)
    tables = _policy_tables(x.shape[-2], x.shape[-1], dev)
    chunk = CPU_CHUNK if dev.type == "cpu" else max(b, 1)
    parts = [
        apply_policy(x[i : i + chunk], pick[i : i + chunk], u_fire[:, i : i + chunk], u_sign[:, i : i + chunk], tables)
        for i in range(0, b, chunk)
    ]
    return parts[0] if len(parts) == 1 else torch.cat(parts)
