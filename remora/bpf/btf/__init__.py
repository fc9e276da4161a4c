"""BTF: the object's type information (`types`), its .BTF.ext records (`ext`), checks of Python
types against it (`check`), kernel loading (`load`) and lazy vmlinux lookups (`kernel`)."""
