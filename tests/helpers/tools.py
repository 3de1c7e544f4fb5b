"""Loading a repository tool (a script under tools/) as a module, by its path: tools
are scripts that import only ``mmseg_dida`` (what two tools share lives in
``mmseg_dida.apis``), so no folder of tools/ is put on ``sys.path``."""
import importlib.util
import os.path as osp

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_tool(path: str):
    """The module of ``tools/...py`` (``path`` relative to the repository), loaded
    once per call under a name of its own."""
    name = 'tool_' + osp.splitext(path)[0].replace('/', '_').replace('.', '_')
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
