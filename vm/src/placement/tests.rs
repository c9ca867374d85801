use super::*;
use crate::config::Config;
use alloc::format;
use alloc::string::ToString;

fn pool(name: &str, vcpus: u32) -> VmRequest<'_> {
    VmRequest {
        name,
        vcpus,
        cpus: None,
        dedicated: false,
    }
}

fn pinned<'a>(name: &'a str, vcpus: u32, cpus: &'a [u32]) -> VmRequest<'a> {
    VmRequest {
        name,
        vcpus,
        cpus: Some(cpus),
        dedicated: false,
    }
}

fn dedicated<'a>(name: &'a str, vcpus: u32, cpus: &'a [u32]) -> VmRequest<'a> {
    VmRequest {
        dedicated: true,
        ..pinned(name, vcpus, cpus)
    }
}

fn loads(p: &Placement) -> Vec<(u32, usize)> {
    p.cpus.iter().map(|c| (c.cpu, c.vcpus.len())).collect()
}

#[test]
fn one_vm_one_cpu() {
    let p = plan(&[pool("a", 1)], &[0]).unwrap();
    assert_eq!(p.homes, [vec![0]]);
    assert_eq!(
        p.cpus,
        [CpuPlan {
            cpu: 0,
            dedicated_to: None,
            vcpus: vec![VcpuRef { vm: 0, vcpu: 0 }],
        }]
    );
    assert_eq!(
        (p.home(0, 0), p.home(0, 1), p.home(1, 0)),
        (Some(0), None, None)
    );
}

#[test]
fn dedicated_vcpu_i_on_cpus_i_and_every_listed_cpu_is_owned() {
    // CPUs listed out of order, one more CPU than vCPUs: CPU 1 is owned and idle.
    let vms = [pool("os", 2), dedicated("rt", 2, &[3, 2, 1])];
    let p = plan(&vms, &[0, 1, 2, 3]).unwrap();
    assert_eq!(p.homes[1], [3, 2]);
    for cpu in [1, 2, 3] {
        assert_eq!(p.dedicated_to(cpu), Some(1), "cpu {cpu}");
    }
    assert_eq!(p.dedicated_to(0), None);
    assert_eq!(p.load(1), 0);
    // The pool VM never lands on a dedicated CPU: both its vCPUs on CPU 0.
    assert_eq!(p.homes[0], [0, 0]);
    assert_eq!(loads(&p), [(0, 2), (1, 0), (2, 1), (3, 1)]);
}

#[test]
fn pinned_vcpus_wrap_around_their_list() {
    let p = plan(&[pinned("a", 5, &[3, 1])], &[0, 1, 2, 3]).unwrap();
    assert_eq!(p.homes[0], [3, 1, 3, 1, 3]);
    assert_eq!(loads(&p), [(0, 0), (1, 2), (2, 0), (3, 3)]);
    assert_eq!(
        p.cpu(1).unwrap().vcpus,
        [VcpuRef { vm: 0, vcpu: 1 }, VcpuRef { vm: 0, vcpu: 3 }]
    );
    // Two pinned VMs may share CPUs.
    let p = plan(&[pinned("a", 2, &[1]), pinned("b", 1, &[1])], &[0, 1]).unwrap();
    assert_eq!(
        (p.homes[0].as_slice(), p.homes[1].as_slice()),
        (&[1, 1][..], &[1][..])
    );
    assert_eq!(p.load(1), 3);
}

#[test]
fn pool_least_loaded_first_ties_to_lowest_index_pinned_counted_first() {
    // CPU 1 is missing; the pinned VM comes after the pool VMs in the list but loads CPU 0
    // before any pool vCPU is placed.
    let vms = [pool("p1", 4), pool("p2", 1), pinned("pin", 2, &[0])];
    let p = plan(&vms, &[3, 0, 2]).unwrap();
    assert_eq!(p.homes[2], [0, 0]);
    // Loads before p1: 0:2 2:0 3:0 -> 2, 3, then 2 and 3 tie at 1 -> 2, then 3.
    assert_eq!(p.homes[0], [2, 3, 2, 3]);
    // All three at 2: the lowest index.
    assert_eq!(p.homes[1], [0]);
    assert_eq!(loads(&p), [(0, 3), (2, 2), (3, 2)]);
    assert_eq!(p.cpu(1), None);
    assert_eq!(p.load(1), 0);
}

#[test]
fn pool_spreads_over_cpus_left_by_dedicated_vms() {
    let vms = [dedicated("rt", 1, &[1]), pool("a", 3), pool("b", 2)];
    let p = plan(&vms, &[0, 1, 2, 3]).unwrap();
    assert_eq!(p.homes, [vec![1], vec![0, 2, 3], vec![0, 2]]);
    assert!(p.homes[1..].iter().flatten().all(|&c| c != 1));
    assert_eq!(loads(&p), [(0, 2), (1, 1), (2, 2), (3, 1)]);
}

#[test]
fn usable_cpus_are_sorted_and_deduplicated() {
    let p = plan(&[pool("a", 3)], &[2, 0, 2, 0]).unwrap();
    assert_eq!(p.homes[0], [0, 2, 0]);
    assert_eq!(p.cpus.iter().map(|c| c.cpu).collect::<Vec<_>>(), [0, 2]);
}

#[test]
fn sixteen_vcpus_over_sixteen_vms_on_two_cpus() {
    let names: Vec<String> = (0..16).map(|i| format!("v{i}")).collect();
    let vms: Vec<VmRequest<'_>> = names.iter().map(|n| pool(n, 16)).collect();
    let p = plan(&vms, &[0, 1]).unwrap();
    assert_eq!(loads(&p), [(0, 128), (1, 128)]);
    assert!(p.homes.iter().all(|h| h.len() == 16));
}

#[test]
fn requests_from_a_parsed_configuration() {
    let c = Config::parse(
        b"[vm.rt]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\nvcpus = 2\ncpus = [2, 3]\ndedicated = true\n\
          [vm.os]\nkind = \"elf64\"\nimage = \"a\"\nmemory = \"4M\"\nvcpus = 3\n",
    )
    .unwrap();
    let vms: Vec<VmRequest<'_>> = c.vms.iter().map(VmRequest::from).collect();
    assert_eq!(vms[0], dedicated("rt", 2, &[2, 3]));
    assert_eq!(vms[1], pool("os", 3));
    let p = plan(&vms, &[0, 1, 2, 3]).unwrap();
    assert_eq!(p.homes, [vec![2, 3], vec![0, 1, 0]]);
    // On a 3-CPU machine the dedicated VM loses CPU 3: refused, naming the CPUs there are.
    assert_eq!(
        plan(&vms, &[0, 1, 2]).unwrap_err().to_string(),
        "the dedicated [vm.rt] owns CPU 3, which is not in VMX root (the CPUs are 0, 1, 2): \
         give it CPUs that are there (a real-time VM never runs on a CPU it does not own), or \
         run on a machine with more CPUs"
    );
}

#[test]
fn errors_say_what_to_change() {
    let cases: &[(&[VmRequest<'_>], &[u32], PlacementError, &str)] = &[
        (
            &[pool("a", 1)],
            &[],
            PlacementError::NoCpus,
            "no CPU is in VMX root, so no vCPU can run: see the platform report's `cpu N:` \
             lines for why",
        ),
        (
            &[pinned("a", 1, &[1]), pinned("b", 2, &[0, 3])],
            &[0, 2, 1],
            PlacementError::CpuNotPresent {
                vm: "b".into(),
                cpu: 3,
                present: vec![0, 1, 2],
            },
            "[vm.b] is pinned to CPU 3, which is not in VMX root (the CPUs are 0, 1, 2): pin \
             it to those, leave `cpus` out to use the pool, or run on a machine with more CPUs",
        ),
        (
            // A listed CPU beyond the vCPU count must exist too.
            &[pinned("a", 1, &[0, 5])],
            &[0, 1],
            PlacementError::CpuNotPresent {
                vm: "a".into(),
                cpu: 5,
                present: vec![0, 1],
            },
            "[vm.a] is pinned to CPU 5, which is not in VMX root (the CPUs are 0, 1): pin it \
             to those, leave `cpus` out to use the pool, or run on a machine with more CPUs",
        ),
        (
            &[dedicated("rt", 1, &[1, 2])],
            &[0, 1],
            PlacementError::DedicatedCpuMissing {
                vm: "rt".into(),
                cpu: 2,
                present: vec![0, 1],
            },
            "the dedicated [vm.rt] owns CPU 2, which is not in VMX root (the CPUs are 0, 1): \
             give it CPUs that are there (a real-time VM never runs on a CPU it does not own), \
             or run on a machine with more CPUs",
        ),
        (
            &[dedicated("rt", 2, &[0, 1]), pool("os", 1)],
            &[0, 1],
            PlacementError::NoSharedCpu {
                vm: "os".into(),
                dedicated: vec![0, 1],
            },
            "[vm.os] runs on the shared pool (no `cpus`), but every CPU in VMX root (0, 1) is \
             dedicated: take a CPU out of a dedicated VM's `cpus`, or run on a machine with \
             more CPUs",
        ),
        (
            &[dedicated("a", 1, &[1]), dedicated("b", 1, &[1])],
            &[0, 1],
            PlacementError::DedicatedCpuShared {
                cpu: 1,
                dedicated: "a".into(),
                other: "b".into(),
            },
            "CPU 1 is dedicated to [vm.a] and also in the `cpus` of [vm.b]: remove it from \
             [vm.b]",
        ),
        (
            &[pinned("os", 1, &[1]), dedicated("rt", 1, &[1])],
            &[0, 1],
            PlacementError::DedicatedCpuShared {
                cpu: 1,
                dedicated: "rt".into(),
                other: "os".into(),
            },
            "CPU 1 is dedicated to [vm.rt] and also in the `cpus` of [vm.os]: remove it from \
             [vm.os]",
        ),
        (
            // Listed beyond the pinned VM's vCPU count.
            &[pinned("os", 1, &[0, 1]), dedicated("rt", 1, &[1])],
            &[0, 1],
            PlacementError::DedicatedCpuShared {
                cpu: 1,
                dedicated: "rt".into(),
                other: "os".into(),
            },
            "CPU 1 is dedicated to [vm.rt] and also in the `cpus` of [vm.os]: remove it from \
             [vm.os]",
        ),
        (
            &[pool("a", 0)],
            &[0],
            PlacementError::NoVcpus { vm: "a".into() },
            "[vm.a] has no vCPU: set vcpus = 1 or more",
        ),
        (
            &[pinned("a", 1, &[])],
            &[0],
            PlacementError::EmptyCpus { vm: "a".into() },
            "[vm.a] has an empty `cpus`: list its CPUs, e.g. cpus = [1], or leave `cpus` out \
             to run on the shared pool",
        ),
        (
            &[pinned("a", 1, &[0, 1, 0])],
            &[0, 1],
            PlacementError::DuplicateCpu {
                vm: "a".into(),
                cpu: 0,
            },
            "[vm.a] lists CPU 0 twice in `cpus`: list it once",
        ),
        (
            &[VmRequest {
                dedicated: true,
                ..pool("a", 1)
            }],
            &[0],
            PlacementError::DedicatedWithoutCpus { vm: "a".into() },
            "[vm.a] is dedicated but has no `cpus`: name the CPUs it owns, e.g. cpus = [1]",
        ),
        (
            &[dedicated("a", 3, &[0, 1])],
            &[0, 1, 2],
            PlacementError::DedicatedTooFewCpus {
                vm: "a".into(),
                vcpus: 3,
                cpus: 2,
            },
            "more dedicated vCPUs than CPUs: [vm.a] has vcpus = 3 but 2 CPUs in `cpus`; list \
             more or set vcpus = 2",
        ),
    ];
    for (vms, usable, error, message) in cases {
        let e = plan(vms, usable).unwrap_err();
        assert_eq!(&e, error, "{vms:?} on {usable:?}");
        assert_eq!(e.to_string(), *message);
    }
}
