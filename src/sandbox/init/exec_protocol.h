/* The contract between the runtime (process.cc) and warren-exec
 * (warren_exec.c), the intermediate of every exec into a sandbox. Plain C:
 * included by the freestanding helper and by the C++ runtime.
 *
 * The runtime execs warren-exec from a sealed memfd with this argv (all
 * numbers in decimal, -1 = none) and the command's environment as envp:
 *
 *   [0]  "warren-exec"
 *   [1]  report_wr   pipe to the runtime: warren_exec_report records
 *   [2]  pidfd       pidfd of the sandbox's init (namespaces to join)
 *   [3]  in_rd       stdin of the command    (with tty_fd < 0)
 *   [4]  out_wr      stdout of the command   (with tty_fd < 0)
 *   [5]  err_wr      stderr of the command   (with tty_fd < 0)
 *   [6]  tty_fd      >= 0: terminal slave for fds 0-2 and controlling tty
 *   [7]  cmd_rd      >= 0: becomes fd 4 (session command channel)
 *   [8]  uid         inside the sandbox
 *   [9]  gid
 *   [10] caps        capability mask kept (bit n = capability n)
 *   [11] nprocs      number of cgroup.procs files that follow
 *   [12] seccomp     the classic BPF program, hex of its sock_filter bytes
 *   [13] cwd         inside the sandbox
 *   [14] path        PATH searched for a command without '/'
 *   [15 .. 15+nprocs)        cgroup.procs files to join (host paths)
 *   [15+nprocs .. argc)      the command's argv (at least one)
 *
 * Every fd listed is open in warren-exec (not close-on-exec); no other fd
 * the runtime owns is (the runtime's are all close-on-exec).
 *
 * Reports on report_wr, in order: at most one 'S' (setup failed; exit 127)
 * or 'P' (the command's host pid) then, from the command's child, at most
 * one 'S' or 'E' (execve failed, exit 127). The pipe reaches EOF once both
 * warren-exec and the command have closed it (the command's copy is
 * close-on-exec). warren-exec then exits with the command's status (128+N
 * for signal N). */
#ifndef WARREN_SANDBOX_EXEC_PROTOCOL_H_
#define WARREN_SANDBOX_EXEC_PROTOCOL_H_

#include <stdint.h>

#define WARREN_EXEC_FIXED_ARGS 15

/* One report: atomic on a pipe (< PIPE_BUF). */
struct warren_exec_report {
  char tag;      /* 'P' = pid of the command (host pid), 'E' = exec errno, 'S' = setup errno */
  int32_t value; /* pid or errno (positive) */
  char where[32];
};

#endif /* WARREN_SANDBOX_EXEC_PROTOCOL_H_ */
