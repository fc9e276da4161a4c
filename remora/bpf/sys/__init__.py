"""Internal syscall layer: attr layouts (`types`), the bpf(2) call (`syscall`), fd owners (`fd`)."""
