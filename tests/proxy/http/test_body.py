from remora.proxy.http.body import BodyPipe


class Source:
    """Counts read blocks the way DownstreamConnection.block_reading does."""

    def __init__(self) -> None:
        self.blocks = 0

    def __call__(self, block: bool) -> None:
        self.blocks += 1 if block else -1


def test_buffers_until_attached_then_passes_through_in_order() -> None:
    source = Source()
    pipe = BodyPipe(limit=10, on_backlog=source)
    pipe.feed(b"abc")
    pipe.feed(b"def")
    out: list[bytes] = []
    ended: list[bool] = []
    pipe.attach(out.append, lambda: ended.append(True))
    pipe.feed(b"ghi")
    pipe.finish()
    assert out == [b"abc", b"def", b"ghi"] and ended == [True] and pipe.total == 9


def test_backlog_blocks_the_source_once_and_releases_it_once() -> None:
    source = Source()
    pipe = BodyPipe(limit=4, on_backlog=source)
    for _ in range(5):  # every chunk past the limit must not add another block
        pipe.feed(b"xxxx")
    assert source.blocks == 1
    pipe.attach(lambda data: None, lambda: None)
    assert source.blocks == 0


def test_detach_releases_a_backlog() -> None:
    source = Source()
    pipe = BodyPipe(limit=1, on_backlog=source)
    pipe.feed(b"xx")
    pipe.feed(b"yy")
    pipe.detach()
    assert source.blocks == 0 and pipe.buffered == 0


def test_complete_before_attach_ends_on_attach() -> None:
    pipe = BodyPipe(limit=100, on_backlog=Source())
    pipe.feed(b"a")
    pipe.finish()
    ended: list[bool] = []
    pipe.attach(lambda data: None, lambda: ended.append(True))
    assert ended == [True]
