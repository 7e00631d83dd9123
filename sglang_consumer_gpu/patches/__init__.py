"""The patches, one module per SGLang (or Triton) seam they answer; each defines ``PATCH`` or
``PATCHES`` (:class:`~sglang_consumer_gpu.patching.base.Patch`). Every module of this package
is a patch module (:func:`~sglang_consumer_gpu.patching.catalog.builtin_patches` lists them);
the machinery is :mod:`sglang_consumer_gpu.patching`."""
