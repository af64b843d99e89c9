"""What people see when the output is not a terminal: plain lines and aligned columns."""

import io

from lab import ui


def test_plain_table_pads_every_column_but_the_last():
    text = ui.plain_table(["NODE", "KIND", "STATE"], [("greenVM", "namespace", "VRRP MASTER"),
                                                     ("blueC0", "LXD container", "")])
    lines = text.splitlines()
    assert lines[0] == "NODE     KIND           STATE"
    assert lines[1] == "greenVM  namespace      VRRP MASTER"
    assert lines[2] == "blueC0   LXD container"


def test_not_a_terminal_gets_plain_lines():
    out = io.StringIO()
    r = ui.for_terminal(out)
    assert isinstance(r, ui.Plain)
    r.stage("[ 0.1s] machines and wires")
    r.note("[ 0.2s] routerVM: placed 5 file(s)")
    r.close()
    ui.table(["A", "B"], [("x", "[y]")], "title", out=out)
    assert out.getvalue().splitlines() == ["[ 0.1s] machines and wires", "[ 0.2s] routerVM: placed 5 file(s)",
                                           "title", "A  B", "x  [y]"]
