"""VerIPO: verifier-guided iterative policy optimisation for video LLMs.

Modules that import transformers or torchvision call ``veripo.media.torchvision_cpu.apply()`` first; the
package itself stays import-light so the scoring tools run without torch.
"""
