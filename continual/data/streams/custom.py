from continual.data.streams import STREAMS, register
from continual.errors import ConfigError


@register("custom")
def custom(cfg, seed):
    """your own stream, data.custom=<module>:<function>: the older spelling of data.stream=<module>:<function>"""
    if not cfg.custom or ":" not in cfg.custom:
        raise ConfigError("data.stream=custom needs data.custom='module:function' (a function (cfg, seed) -> Stream)")
    return STREAMS.get(cfg.custom, "data.custom")(cfg, seed)
