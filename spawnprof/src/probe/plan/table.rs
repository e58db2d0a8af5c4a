//! The attach table: every stage and its candidates, best first.
use super::{Attach, Candidate, Mechanism, ProbeStage};
use crate::probe::arch::syscall_function;

const fn tp(program: &'static str, category: &'static str, name: &'static str) -> Attach {
    Attach::Tracepoint {
        program,
        category,
        name,
        optional: false,
    }
}

const fn tp_optional(program: &'static str, category: &'static str, name: &'static str) -> Attach {
    Attach::Tracepoint {
        program,
        category,
        name,
        optional: true,
    }
}

/// The raw tracepoint `name`, attached with the program `raw_<name>` (the
/// naming every raw-tracepoint program follows).
macro_rules! raw_tp {
    ($name:literal) => {
        Attach::RawTracepoint {
            program: concat!("raw_", $name),
            name: $name,
        }
    };
}

const UNAVAILABLE: Candidate = Candidate {
    mechanism: Mechanism::Unavailable,
    attaches: &[],
    how: "not measured on this kernel: reported as null, never as zero",
};

const RAW_MMAP_LOCK: &[Attach] = &[
    raw_tp!("mmap_lock_start_locking"),
    raw_tp!("mmap_lock_released"),
];

/// The same before about 6.14, when a memcg_path came before `write`.
/// The raw programs only a fork needs (dup_mmap's lock bracket, the CoW
/// fault count) that fire on every such event of the machine: parked
/// while the traced processes do not fork (see `park`).
pub const FORK_ONLY: &[&str] = &[
    "raw_mmap_lock_start_locking",
    "raw_mmap_lock_released",
    "raw_mmap_lock_start_locking_memcg",
    "raw_mmap_lock_released_memcg",
    "raw_page_fault_user",
];

const RAW_MMAP_LOCK_MEMCG: &[Attach] = &[
    Attach::RawTracepoint {
        program: "raw_mmap_lock_start_locking_memcg",
        name: "mmap_lock_start_locking",
    },
    Attach::RawTracepoint {
        program: "raw_mmap_lock_released_memcg",
        name: "mmap_lock_released",
    },
];

const MMAP_LOCK: &[Attach] = &[
    tp(
        "mmap_lock_start_locking",
        "mmap_lock",
        "mmap_lock_start_locking",
    ),
    tp("mmap_lock_released", "mmap_lock", "mmap_lock_released"),
];

/// Fentry + fexit, or kprobe + kretprobe, on one kernel function.
macro_rules! function_pair {
    ($fentry:literal, $fexit:literal, $kprobe:literal, $kretprobe:literal, $function:literal) => {
        (
            Candidate {
                mechanism: Mechanism::Fentry,
                attaches: &[
                    Attach::Fentry {
                        program: $fentry,
                        function: $function,
                    },
                    Attach::Fexit {
                        program: $fexit,
                        function: $function,
                    },
                ],
                how: concat!("fentry/fexit on ", $function),
            },
            Candidate {
                mechanism: Mechanism::Kprobe,
                attaches: &[
                    Attach::Kprobe {
                        program: $kprobe,
                        function: $function,
                    },
                    Attach::Kretprobe {
                        program: $kretprobe,
                        function: $function,
                    },
                ],
                how: concat!("kprobe/kretprobe on ", $function),
            },
        )
    };
}

const COPY_PROCESS: (Candidate, Candidate) = function_pair!(
    "fentry_copy_process",
    "fexit_copy_process",
    "kprobe_copy_process",
    "kretprobe_copy_process",
    "copy_process"
);
const DUP_MMAP: (Candidate, Candidate) = function_pair!(
    "fentry_dup_mmap",
    "fexit_dup_mmap",
    "kprobe_dup_mmap",
    "kretprobe_dup_mmap",
    "dup_mmap"
);
const COPY_PAGE_RANGE: (Candidate, Candidate) = function_pair!(
    "fentry_copy_page_range",
    "fexit_copy_page_range",
    "kprobe_copy_page_range",
    "kretprobe_copy_page_range",
    "copy_page_range"
);
const ANON_VMA_FORK: (Candidate, Candidate) = function_pair!(
    "fentry_anon_vma_fork",
    "fexit_anon_vma_fork",
    "kprobe_anon_vma_fork",
    "kretprobe_anon_vma_fork",
    "anon_vma_fork"
);

const KERNEL_CLONE: (Candidate, Candidate) = function_pair!(
    "fentry_kernel_clone",
    "fexit_kernel_clone",
    "kprobe_kernel_clone",
    "kretprobe_kernel_clone",
    "kernel_clone"
);

/// Where dup_mmap is inlined into dup_mm (5.10 and 6.12 here), its first
/// and last calls time it; `$on` says through what.
macro_rules! dup_mmap_bracket {
    ($on:literal) => {
        concat!(
            $on,
            " uprobe_start_dup_mmap and uprobe_end_dup_mmap, dup_mmap's first and last calls (where dup_mmap itself is inlined)"
        )
    };
}

/// The syscall-tracepoint tier of the clone stage.
const CLONE_TRACEPOINTS: Candidate = Candidate {
    mechanism: Mechanism::Tracepoint,
    attaches: &[
        tp("sys_enter_clone", "syscalls", "sys_enter_clone"),
        tp("sys_exit_clone", "syscalls", "sys_exit_clone"),
        tp_optional("sys_enter_clone3", "syscalls", "sys_enter_clone3"),
        tp_optional("sys_exit_clone3", "syscalls", "sys_exit_clone3"),
        tp_optional("sys_enter_fork", "syscalls", "sys_enter_fork"),
        tp_optional("sys_exit_fork", "syscalls", "sys_exit_fork"),
        tp_optional("sys_enter_vfork", "syscalls", "sys_enter_vfork"),
        tp_optional("sys_exit_vfork", "syscalls", "sys_exit_vfork"),
    ],
    how: "syscall entry/exit tracepoints of clone, clone3, fork, vfork (flags, return)",
};

/// Every stage, with its candidates best first. The syscall stages (clone,
/// exec, reap) prefer kernel functions: attaching any syscall tracepoint
/// sends every syscall of every task through the kernel's slow entry path
/// (syscall_trace_enter), and a classic tracepoint builds a record before
/// its program runs; fentry programs do neither.
pub const PLAN: &[ProbeStage] = &[
    ProbeStage {
        name: "clone",
        required: true,
        candidates: &[
            Candidate {
                how: "fentry/fexit on kernel_clone (flags, return; the syscall's name is not known)",
                ..KERNEL_CLONE.0
            },
            Candidate {
                how: "kprobe/kretprobe on kernel_clone (flags, return; the syscall's name is not known)",
                ..KERNEL_CLONE.1
            },
            CLONE_TRACEPOINTS,
        ],
    },
    ProbeStage {
        name: "copy_process",
        required: false,
        candidates: &[
            COPY_PROCESS.0,
            COPY_PROCESS.1,
            // task_newtask would end it a few hundred ns earlier, at the
            // price of one more program per spawn.
            Candidate {
                mechanism: Mechanism::RawTracepoint,
                attaches: &[],
                how: "syscall entry to raw sched_process_fork, fired as copy_process returns (the fork_done probe: nothing more attached)",
            },
            Candidate {
                mechanism: Mechanism::Tracepoint,
                attaches: &[],
                how: "syscall entry to sched:sched_process_fork, fired as copy_process returns (the fork_done probe: nothing more attached)",
            },
            UNAVAILABLE,
        ],
    },
    ProbeStage {
        name: "dup_mmap",
        required: false,
        candidates: &[
            DUP_MMAP.0,
            Candidate {
                mechanism: Mechanism::Fentry,
                attaches: &[
                    Attach::Fentry {
                        program: "fentry_dup_mmap_begin",
                        function: "uprobe_start_dup_mmap",
                    },
                    Attach::Fentry {
                        program: "fentry_dup_mmap_end",
                        function: "uprobe_end_dup_mmap",
                    },
                ],
                how: dup_mmap_bracket!("fentry on"),
            },
            DUP_MMAP.1,
            Candidate {
                mechanism: Mechanism::Kprobe,
                attaches: &[
                    Attach::Kprobe {
                        program: "kprobe_dup_mmap_begin",
                        function: "uprobe_start_dup_mmap",
                    },
                    Attach::Kprobe {
                        program: "kprobe_dup_mmap_end",
                        function: "uprobe_end_dup_mmap",
                    },
                ],
                how: dup_mmap_bracket!("kprobes on"),
            },
            Candidate {
                mechanism: Mechanism::RawTracepoint,
                attaches: RAW_MMAP_LOCK,
                how: "first write-lock of the parent's mm inside the clone to its release (raw mmap_lock tracepoints)",
            },
            Candidate {
                mechanism: Mechanism::RawTracepoint,
                attaches: RAW_MMAP_LOCK_MEMCG,
                how: "first write-lock of the parent's mm inside the clone to its release (raw mmap_lock tracepoints with a memcg_path, before about 6.14)",
            },
            Candidate {
                mechanism: Mechanism::Tracepoint,
                attaches: MMAP_LOCK,
                how: "first write-lock of the parent's mm inside the clone to its release (brackets dup_mmap)",
            },
            UNAVAILABLE,
        ],
    },
    ProbeStage {
        name: "mm_lock_wait",
        required: false,
        candidates: &[
            Candidate {
                mechanism: Mechanism::Fentry,
                attaches: &[
                    Attach::Fentry {
                        program: "fentry_uprobe_start_dup_mmap",
                        function: "uprobe_start_dup_mmap",
                    },
                    Attach::Fentry {
                        program: "fentry_uprobe_dup_mmap",
                        function: "uprobe_dup_mmap",
                    },
                ],
                how: "fentry on uprobe_start_dup_mmap and uprobe_dup_mmap, which dup_mmap calls just before and just after taking the parent's mmap write lock",
            },
            Candidate {
                mechanism: Mechanism::Kprobe,
                attaches: &[
                    Attach::Kprobe {
                        program: "kprobe_uprobe_start_dup_mmap",
                        function: "uprobe_start_dup_mmap",
                    },
                    Attach::Kprobe {
                        program: "kprobe_uprobe_dup_mmap",
                        function: "uprobe_dup_mmap",
                    },
                ],
                how: "kprobes on uprobe_start_dup_mmap and uprobe_dup_mmap, which dup_mmap calls just before and just after taking the parent's mmap write lock",
            },
            Candidate {
                mechanism: Mechanism::RawTracepoint,
                attaches: RAW_MMAP_LOCK,
                how: "raw mmap_lock start_locking of the parent's mm to that of the new one, inside the clone",
            },
            Candidate {
                mechanism: Mechanism::RawTracepoint,
                attaches: RAW_MMAP_LOCK_MEMCG,
                how: "raw mmap_lock start_locking of the parent's mm to that of the new one, inside the clone (with a memcg_path, before about 6.14)",
            },
            Candidate {
                mechanism: Mechanism::Tracepoint,
                attaches: MMAP_LOCK,
                how: "mmap_lock start_locking of the parent's mm to that of the new one, inside the clone",
            },
            UNAVAILABLE,
        ],
    },
    ProbeStage {
        name: "copy_page_range",
        required: false,
        candidates: &[COPY_PAGE_RANGE.0, COPY_PAGE_RANGE.1, UNAVAILABLE],
    },
    ProbeStage {
        name: "anon_vma_fork",
        required: false,
        candidates: &[ANON_VMA_FORK.0, ANON_VMA_FORK.1, UNAVAILABLE],
    },
    ProbeStage {
        name: "fork_done",
        required: true,
        candidates: &[
            Candidate {
                mechanism: Mechanism::RawTracepoint,
                attaches: &[raw_tp!("sched_process_fork")],
                how: "raw sched_process_fork (also grows the set of traced processes)",
            },
            Candidate {
                mechanism: Mechanism::Tracepoint,
                attaches: &[tp("sched_process_fork", "sched", "sched_process_fork")],
                how: "sched:sched_process_fork (also grows the set of traced processes)",
            },
        ],
    },
    ProbeStage {
        name: "wakeup_new",
        required: false,
        candidates: &[
            Candidate {
                mechanism: Mechanism::RawTracepoint,
                attaches: &[raw_tp!("sched_wakeup_new")],
                how: "raw sched_wakeup_new",
            },
            Candidate {
                mechanism: Mechanism::Tracepoint,
                attaches: &[tp("sched_wakeup_new", "sched", "sched_wakeup_new")],
                how: "sched:sched_wakeup_new",
            },
            UNAVAILABLE,
        ],
    },
    ProbeStage {
        name: "first_run",
        required: false,
        candidates: &[
            Candidate {
                mechanism: Mechanism::Fentry,
                attaches: &[Attach::Fentry {
                    program: "fentry_schedule_tail",
                    function: "schedule_tail",
                }],
                how: "fentry on schedule_tail, the new task's first function after its first context switch (once per task created)",
            },
            Candidate {
                mechanism: Mechanism::Kprobe,
                attaches: &[Attach::Kprobe {
                    program: "kprobe_schedule_tail",
                    function: "schedule_tail",
                }],
                how: "kprobe on schedule_tail, the new task's first function after its first context switch (once per task created)",
            },
            Candidate {
                mechanism: Mechanism::RawTracepoint,
                attaches: &[raw_tp!("sched_switch")],
                how: "raw sched_switch to the new task (one map lookup per context switch)",
            },
            Candidate {
                mechanism: Mechanism::Tracepoint,
                attaches: &[tp("sched_switch", "sched", "sched_switch")],
                how: "sched:sched_switch to the new task (may be skipped while another BPF user holds the CPU)",
            },
            Candidate {
                mechanism: Mechanism::SchedInfo,
                attaches: &[],
                how: "the new task's wake-up plus the wait the scheduler counted (sched_info.run_delay), read at its return from the clone (that return itself on another CPU, whose wake from idle the count misses): no program per context switch",
            },
            UNAVAILABLE,
        ],
    },
    ProbeStage {
        name: "exec",
        required: true,
        candidates: &[
            Candidate {
                mechanism: Mechanism::Fentry,
                attaches: &[
                    Attach::Fentry {
                        program: "fentry_execve",
                        function: syscall_function!("execve"),
                    },
                    Attach::Fexit {
                        program: "fexit_execve",
                        function: syscall_function!("execve"),
                    },
                    Attach::Fentry {
                        program: "fentry_execveat",
                        function: syscall_function!("execveat"),
                    },
                    Attach::Fexit {
                        program: "fexit_execveat",
                        function: syscall_function!("execveat"),
                    },
                ],
                how: "fentry/fexit on the execve/execveat syscall functions: every attempt, its path and result",
            },
            Candidate {
                mechanism: Mechanism::Kprobe,
                attaches: &[
                    Attach::Kprobe {
                        program: "kprobe_execve",
                        function: syscall_function!("execve"),
                    },
                    Attach::Kretprobe {
                        program: "kretprobe_execve",
                        function: syscall_function!("execve"),
                    },
                    Attach::Kprobe {
                        program: "kprobe_execveat",
                        function: syscall_function!("execveat"),
                    },
                    Attach::Kretprobe {
                        program: "kretprobe_execveat",
                        function: syscall_function!("execveat"),
                    },
                ],
                how: "kprobe/kretprobe on the execve/execveat syscall functions: every attempt, its path and result",
            },
            Candidate {
                mechanism: Mechanism::Tracepoint,
                attaches: &[
                    tp("sys_enter_execve", "syscalls", "sys_enter_execve"),
                    tp("sys_exit_execve", "syscalls", "sys_exit_execve"),
                    tp_optional("sys_enter_execveat", "syscalls", "sys_enter_execveat"),
                    tp_optional("sys_exit_execveat", "syscalls", "sys_exit_execveat"),
                ],
                how: "execve/execveat entry and return: every attempt, its path and result",
            },
        ],
    },
    ProbeStage {
        name: "exec_prepare",
        required: false,
        candidates: &[
            // begin_new_exec is the function that fires sched_prepare_exec on
            // 6.10+ (a bprm_creds_from_file later), and the only way to see
            // that point before 6.10.
            Candidate {
                mechanism: Mechanism::Fentry,
                attaches: &[Attach::Fentry {
                    program: "fentry_begin_new_exec",
                    function: "begin_new_exec",
                }],
                how: "fentry on begin_new_exec (5.8+): binary found, at the point of no return",
            },
            Candidate {
                mechanism: Mechanism::Kprobe,
                attaches: &[Attach::Kprobe {
                    program: "kprobe_begin_new_exec",
                    function: "begin_new_exec",
                }],
                how: "kprobe on begin_new_exec (5.8+): binary found, at the point of no return",
            },
            Candidate {
                mechanism: Mechanism::RawTracepoint,
                attaches: &[raw_tp!("sched_prepare_exec")],
                how: "raw sched_prepare_exec (6.10+): binary found, before the point of no return",
            },
            Candidate {
                mechanism: Mechanism::Tracepoint,
                attaches: &[tp("sched_prepare_exec", "sched", "sched_prepare_exec")],
                how: "sched:sched_prepare_exec (6.10+): binary found, before the point of no return",
            },
            UNAVAILABLE,
        ],
    },
    ProbeStage {
        name: "exec_done",
        required: true,
        candidates: &[
            Candidate {
                mechanism: Mechanism::RawTracepoint,
                attaches: &[raw_tp!("sched_process_exec")],
                how: "raw sched_process_exec: the new image is in place, with the kernel's argc/envc",
            },
            Candidate {
                mechanism: Mechanism::Tracepoint,
                attaches: &[tp("sched_process_exec", "sched", "sched_process_exec")],
                how: "sched:sched_process_exec: the new image is in place (no argc/envc)",
            },
        ],
    },
    ProbeStage {
        name: "exit",
        required: true,
        candidates: &[
            Candidate {
                mechanism: Mechanism::RawTracepoint,
                attaches: &[raw_tp!("sched_process_exit")],
                how: "raw sched_process_exit of the last thread (kernels whose tracepoint passes group_dead)",
            },
            Candidate {
                mechanism: Mechanism::Tracepoint,
                attaches: &[tp("sched_process_exit", "sched", "sched_process_exit")],
                how: "sched:sched_process_exit of the last thread",
            },
        ],
    },
    ProbeStage {
        name: "reap",
        required: false,
        candidates: &[
            Candidate {
                mechanism: Mechanism::Fentry,
                attaches: &[
                    Attach::Fexit {
                        program: "fexit_kernel_wait4",
                        function: "kernel_wait4",
                    },
                    Attach::Fexit {
                        program: "fexit_waitid",
                        function: syscall_function!("waitid"),
                    },
                ],
                how: "fexit on kernel_wait4 and the waitid syscall function returning the child",
            },
            Candidate {
                mechanism: Mechanism::Kprobe,
                attaches: &[
                    Attach::Kretprobe {
                        program: "kretprobe_kernel_wait4",
                        function: "kernel_wait4",
                    },
                    Attach::Kprobe {
                        program: "kprobe_waitid",
                        function: syscall_function!("waitid"),
                    },
                    Attach::Kretprobe {
                        program: "kretprobe_waitid",
                        function: syscall_function!("waitid"),
                    },
                ],
                how: "kretprobe on kernel_wait4, kprobe/kretprobe on the waitid syscall function: the child reaped",
            },
            Candidate {
                mechanism: Mechanism::Tracepoint,
                attaches: &[
                    tp("sys_exit_wait4", "syscalls", "sys_exit_wait4"),
                    tp("sys_enter_waitid", "syscalls", "sys_enter_waitid"),
                    tp("sys_exit_waitid", "syscalls", "sys_exit_waitid"),
                ],
                how: "wait4 and waitid returning the child",
            },
            UNAVAILABLE,
        ],
    },
    ProbeStage {
        name: "release",
        required: false,
        candidates: &[
            Candidate {
                mechanism: Mechanism::RawTracepoint,
                attaches: &[raw_tp!("sched_process_free")],
                how: "raw sched_process_free: a spawned process reaped by a wait no probe saw (an untraced reaper), at its release",
            },
            Candidate {
                mechanism: Mechanism::Tracepoint,
                attaches: &[tp("sched_process_free", "sched", "sched_process_free")],
                how: "sched:sched_process_free: a spawned process reaped by a wait no probe saw (an untraced reaper), at its release",
            },
            UNAVAILABLE,
        ],
    },
    ProbeStage {
        name: "page_faults",
        required: false,
        candidates: &[
            Candidate {
                mechanism: Mechanism::Fentry,
                attaches: &[Attach::Fentry {
                    program: "fentry_do_wp_page",
                    function: "do_wp_page",
                }],
                how: "fentry on do_wp_page: CoW faults (write faults on present pages, THP ones aside) counted per process while it shares memory with a fork; totals from the kernel's task counters",
            },
            Candidate {
                mechanism: Mechanism::Kprobe,
                attaches: &[Attach::Kprobe {
                    program: "kprobe_do_wp_page",
                    function: "do_wp_page",
                }],
                how: "kprobe on do_wp_page: CoW faults (write faults on present pages, THP ones aside) counted per process while it shares memory with a fork; totals from the kernel's task counters",
            },
            Candidate {
                mechanism: Mechanism::RawTracepoint,
                attaches: &[raw_tp!("page_fault_user")],
                how: "raw page_fault_user: CoW faults (writes to present pages) counted per process while it shares memory with a fork; totals from the kernel's task counters",
            },
            Candidate {
                mechanism: Mechanism::Tracepoint,
                attaches: &[tp("page_fault_user", "exceptions", "page_fault_user")],
                how: "exceptions:page_fault_user: CoW faults (writes to present pages) counted per process while it shares memory with a fork; totals from the kernel's task counters",
            },
            UNAVAILABLE,
        ],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_optional_stage_ends_in_unavailable_and_required_ones_do_not_fall_back() {
        for stage in PLAN {
            let last = stage.candidates.last().expect("has candidates");
            if stage.required {
                assert!(
                    stage
                        .candidates
                        .iter()
                        .all(|c| c.mechanism != Mechanism::Unavailable),
                    "{}",
                    stage.name
                );
            } else {
                assert_eq!(last.mechanism, Mechanism::Unavailable, "{}", stage.name);
            }
        }
    }

    /// Several candidates may share a mechanism (one per kernel shape of
    /// a hook), but none may come after a worse one.
    #[test]
    fn candidates_are_ordered_best_first() {
        let rank = |m: Mechanism| m as u8;
        for stage in PLAN {
            let ranks: Vec<u8> = stage.candidates.iter().map(|c| rank(c.mechanism)).collect();
            assert!(
                ranks.windows(2).all(|w| w[0] <= w[1]),
                "{}: {ranks:?}",
                stage.name
            );
        }
    }
}
