"""Related items: learning them from the event stream, ranking them for a shopper, measuring them
on public clickstreams."""
