"""simplane: run simulations on machine groups."""
