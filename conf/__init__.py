"""Config groups of flops-fit (a package so Hydra finds them inside the installed flops_fit)."""
