// The static warren-exec binary (built from warren_exec.c), embedded into
// the runtime: the intermediate of every exec into a sandbox, started from a
// memfd without copying the runtime's address space (process.cc).
  .section .rodata
  .balign 16
  .global warren_exec_blob
  .global warren_exec_blob_end
warren_exec_blob:
  .incbin WARREN_EXEC_BIN
warren_exec_blob_end:
  .section .note.GNU-stack,"",%progbits
