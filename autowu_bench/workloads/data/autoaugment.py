"""AutoAugment's CIFAR-10 policy (Cubuk et al., CVPR 2019), batched with per-sample random choices.

Every image draws its own sub-policy (one of 25 pairs of operations), then each of the pair's two
operations fires with its probability and, for signed operations, a random sign. Instead of grouping
images by operation (which needs a host synchronisation per group on a GPU), each operation is computed
for the whole batch and kept only where it fired (``torch.where``); the geometric operations of one slot
share a single ``grid_sample``. Magnitudes follow the usual 10-bin discretisation (bin m of 0..9):
shear 0.3 m/9, translate (150/331) * size * m/9 pixels, rotate 30 m/9 degrees, enhancement factors
1 +- 0.9 m/9, posterize 8 - round(4 m/9) bits, solarize threshold 255 (1 - m/9). Geometric operations
use nearest interpolation about the image centre and fill with grey (128), as the original code did.
The pixel operations round and clamp as torchvision's uint8 tensor kernels do (tests compare them).
"""

from __future__ import annotations

import functools

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
OP_ID = {name: i for i, name in enumerate(OPS)}
FILL = 128.0


def magnitude(op: str, bin_: int | None, size: int) -> float:
    """The unsigned magnitude of ``op`` at ``bin_`` (0..9) for images of side ``size``."""
    if bin_ is None:
        return 0.0
    f = bin_ / 9.0
    if op in ("ShearX", "ShearY"):
        return 0.3 * f
    if op in ("TranslateX", "TranslateY"):
        return 150.0 / 331.0 * size * f
    if op == "Rotate":
        return 30.0 * f
    if op in ("Brightness", "Color", "Contrast", "Sharpness"):
        return 0.9 * f
    if op == "Posterize":
        return float(int(round(8 - 4 * f)))
    if op == "Solarize":
        return 255.0 * (1.0 - f)
    raise ValueError(f"operation {op!r} has no magnitude; known: {', '.join(OPS)}")


@functools.lru_cache(maxsize=16)
def _policy_tables(size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(op id, probability, magnitude), each ``[25, 2]``, on ``device`` (built once: a host-to-device
    copy per batch would stall the GPU pipeline)."""
    ids = [[OP_ID[op] for op, _, _ in pair] for pair in CIFAR10_POLICY]
    probs = [[p for _, p, _ in pair] for pair in CIFAR10_POLICY]
    mags = [[magnitude(op, m, size) for op, _, m in pair] for pair in CIFAR10_POLICY]
    return (
        torch.tensor(ids, device=device),
        torch.tensor(probs, device=device),
        torch.tensor(mags, device=device, dtype=torch.float32),
    )


def _geometric(x: torch.Tensor, op: torch.Tensor, mag: torch.Tensor, fired: torch.Tensor) -> torch.Tensor:
    """Shear/translate/rotate each image by its own parameters in one grid_sample (identity where not fired)."""
    b, _, h, w = x.shape
    dev = x.device
    eye = torch.eye(2, device=dev).expand(b, 2, 2)
    a = eye.clone()  # input pixel = a @ output pixel + t, in pixel units about the centre
    t = torch.zeros(b, 2, device=dev)
    is_ = {name: fired & (op == OP_ID[name]) for name in GEOMETRIC}
    a[:, 0, 1] = torch.where(is_["ShearX"], mag, 0.0)
    a[:, 1, 0] = torch.where(is_["ShearY"], mag, 0.0)
    theta = torch.deg2rad(torch.where(is_["Rotate"], mag, 0.0))
    cos, sin = torch.cos(theta), torch.sin(theta)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    a = torch.where(is_["Rotate"][:, None, None], rot, a)
    t[:, 0] = torch.where(is_["TranslateX"], -mag, 0.0)
    t[:, 1] = torch.where(is_["TranslateY"], -mag, 0.0)
    # pixel offsets from the centre -> normalised coordinates (align_corners=False): x_n = x_px / (W / 2),
    # so a_n[i, j] = a[i, j] * s_j / s_i and t_n[i] = t[i] / s_i with s = (W / 2, H / 2)
    a[:, 0, 1] *= h / w
    a[:, 1, 0] *= w / h
    t[:, 0] /= w / 2.0
    t[:, 1] /= h / 2.0
    grid = F.affine_grid(torch.cat([a, t[:, :, None]], 2), [b, 1, h, w], align_corners=False)
    moved = F.grid_sample(x.float() - FILL, grid, mode="nearest", padding_mode="zeros", align_corners=False) + FILL
    any_geo = torch.zeros_like(fired)
    for name in GEOMETRIC:
        any_geo |= is_[name]
    return torch.where(any_geo[:, None, None, None], moved.round().clamp(0, 255).to(torch.uint8), x)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma, floored as torchvision's uint8 grayscale, ``[B, 1, H, W]`` float."""
    xf = x.float()
    return (0.2989 * xf[:, 0:1] + 0.587 * xf[:, 1:2] + 0.114 * xf[:, 2:3]).floor()


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance: ``degenerate + factor * (x - degenerate)``, per-sample factor, clamped and truncated."""
    out = degenerate + factor.view(-1, 1, 1, 1) * (x.float() - degenerate)
    return out.clamp(0, 255).to(torch.uint8)


def _smooth(x: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH filter (3x3, centre weight 5, sum 13) with the one-pixel border left as is."""
    c = x.shape[1]
    k = torch.ones(3, 3, device=x.device)
    k[1, 1] = 5.0
    k = (k / 13.0).expand(c, 1, 3, 3)
    inner = F.conv2d(x.float(), k, groups=c).round()
    out = x.float().clone()
    out[:, :, 1:-1, 1:-1] = inner
    return out


def _autocontrast(x: torch.Tensor) -> torch.Tensor:
    xf = x.float()
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


def _posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    mask = (255 - (2 ** (8 - bits.clamp(1, 8).long()) - 1)).to(torch.uint8)
    return x & mask.view(-1, 1, 1, 1)


def apply_op(name: str, x: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    """Apply operation ``name`` to every image of a uint8 batch, with per-sample (signed) magnitudes ``mag``."""
    if name in GEOMETRIC:
        return _geometric(x, torch.full_like(mag, OP_ID[name], dtype=torch.long), mag, torch.ones_like(mag, dtype=torch.bool))
    if name == "Brightness":
        return _blend(torch.zeros_like(x[:, :1], dtype=torch.float32), x, 1.0 + mag)
    if name == "Color":
        return _blend(_grey(x).expand_as(x), x, 1.0 + mag)
    if name == "Contrast":
        return _blend(_grey(x).mean(dim=(1, 2, 3), keepdim=True), x, 1.0 + mag)
    if name == "Sharpness":
        return _blend(_smooth(x), x, 1.0 + mag)
    if name == "Posterize":
        return _posterize(x, mag)
    if name == "Solarize":
        return torch.where(x.float() >= mag.view(-1, 1, 1, 1), 255 - x, x)
    if name == "AutoContrast":
        return _autocontrast(x)
    if name == "Equalize":
        return _equalize(x)
    if name == "Invert":
        return 255 - x
    raise ValueError(f"unknown operation {name!r}; known: {', '.join(OPS)}")


def apply_policy(
    x: torch.Tensor, pick: torch.Tensor, u_fire: torch.Tensor, u_sign: torch.Tensor,
    tables: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """The policy given its random draws: ``pick`` [B] sub-policy index, ``u_fire`` and ``u_sign`` [2, B]
    uniforms deciding whether each slot's operation fires and its sign. Pure tensor code: no host
    synchronisation and no data-dependent shapes, so the GPU never waits for the host."""
    ids, probs, mags = tables
    used = {op for pair in CIFAR10_POLICY for op, _, _ in pair}
    for slot in range(2):
        op = ids[pick, slot]
        fired = u_fire[slot] < probs[pick, slot]
        signed = torch.zeros_like(fired)
        for name in SIGNED:
            signed |= op == OP_ID[name]
        mag = mags[pick, slot] * torch.where(signed & (u_sign[slot] < 0.5), -1.0, 1.0)
        x = _geometric(x, op, mag, fired)
        y = x
        for name in OPS:
            if name in GEOMETRIC or name not in used:
                continue
            this = (fired & (op == OP_ID[name]))[:, None, None, None]
            y = torch.where(this, apply_op(name, x, mag), y)
        x = y
    return x


def cifar10_autoaugment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Apply the CIFAR-10 AutoAugment policy to a uint8 RGB batch ``[B, 3, H, W]``, each image on its own."""
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"AutoAugment expects a uint8 RGB batch [B, 3, H, W], got {x.dtype} {tuple(x.shape)}")
    b, dev = x.shape[0], x.device
    pick = torch.randint(0, len(CIFAR10_POLICY), (b,), generator=generator, device=dev)
    u_fire = torch.rand(2, b, generator=generator, device=dev)
    u_sign = torch.rand(2, b, generator=generator, device=dev)
    return apply_policy(x, pick, u_fire, u_sign, _policy_tables(x.shape[-1], dev))
