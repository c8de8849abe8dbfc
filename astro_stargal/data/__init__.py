"""Small example data bundled with astro_stargal (made with astro_stargal.simulate)."""
