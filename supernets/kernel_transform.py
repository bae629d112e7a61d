"""Elastic kernel size: centre crops of the largest depthwise kernel through OFA's learned transform matrices."""

KERNEL_SIZES = (3, 5, 7)


def centre_crop(kernel, size: int):
    """The centre (size, size) window of a (k, k, C) kernel."""
    start = (kernel.shape[0] - size) // 2
    return kernel[start : start + size, start : start + size]


def active_kernel(kernel, size: int, transforms: dict):
    """The (size, size, C) kernel OFA derives from the (7, 7, C) `kernel` (NumPy or JAX arrays alike).

    Going down the sizes 7 -> 5 -> 3, each step crops the centre of the current kernel and maps its size*size
    taps per channel by the layer's matrix `transforms[size]` (size^2, size^2): tap vector <- matrix @ taps, as
    OFA's `F.linear(filter, matrix)` on (C, size^2) rows.
    """
    if size not in KERNEL_SIZES or kernel.shape[0] != KERNEL_SIZES[-1]:
        raise ValueError(f"active_kernel: size must be one of {KERNEL_SIZES} of a 7x7 kernel, got {size}, "
                         f"kernel shape {kernel.shape}")
    current = kernel
    for target in sorted((s for s in KERNEL_SIZES if s < kernel.shape[0]), reverse=True):
        if target < size:
            break
        crop = centre_crop(current, target)
        flat = crop.reshape(target * target, crop.shape[2])
        current = (transforms[target] @ flat).reshape(target, target, crop.shape[2])
    return current
