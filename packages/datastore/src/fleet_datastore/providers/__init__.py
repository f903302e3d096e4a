"""Storage providers; each is imported only when its URL scheme is used."""
