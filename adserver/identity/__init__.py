"""Who a request comes from and whether Kaeru may remember it: the request gates (bots, opt-out,
GPC/DNT, consent, the uid cookie)."""
