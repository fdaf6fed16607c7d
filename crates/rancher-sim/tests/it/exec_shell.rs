//! The exec shell through real `kubectl exec`: everyday commands, pipes, exit codes and a pod's
//! own little filesystem that lasts across exec sessions.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyday_commands_through_kubectl_exec() {
    let sim = start_sim(1).await;
    for v in VERSIONS {
        let k = Kubectl::new(v, &sim.kubeconfig_yaml());
        let pod = format!("shell{}", v.replace('.', ""));
        k.ok(&[
            "run",
            &pod,
            "--image=busybox:1.36",
            "--restart=Never",
            "--env=COLOR=blue",
            "--",
            "sleep",
            "3600",
        ])
        .await;
        wait_running(&k, "default", &format!("run={pod}"), 1).await;
        let exec = |script: &'static str| {
            let k = &k;
            let pod = pod.clone();
            async move { k.run(&["exec", &pod, "--", "sh", "-c", script]).await }
        };

        // Files: seeded ones, and ones a session writes are there for the next session.
        assert_eq!(k.ok(&["exec", &pod, "--", "cat", "/etc/hostname"]).await, format!("{pod}\n"));
        let os = k.ok(&["exec", &pod, "--", "cat", "/etc/os-release"]).await;
        assert!(os.contains("NAME="), "{os}");
        let o =
            exec("mkdir -p /data/logs && cd /data && echo one > logs/a.txt && echo two >> logs/a.txt && pwd")
                .await;
        assert_eq!(o.stdout, "/data\n", "{o:?}");
        assert_eq!(k.ok(&["exec", &pod, "--", "ls", "/data/logs"]).await, "a.txt\n");
        assert_eq!(k.ok(&["exec", &pod, "--", "wc", "-l", "/data/logs/a.txt"]).await, "2 /data/logs/a.txt\n");
        assert_eq!(exec("cat /data/logs/a.txt | grep two | wc -l").await.stdout, "1\n");
        assert_eq!(exec("ls / | head -n 2").await.stdout, "bin\ndata\n");
        assert_eq!(exec("cat /etc/passwd | tail -n 1 | grep -c nobody").await.stdout, "1\n");
        k.ok(&["exec", &pod, "--", "rm", "-r", "/data"]).await;
        let o = k.run(&["exec", &pod, "--", "ls", "/data"]).await;
        assert_eq!(o.code, Some(2), "{o:?}");
        assert!(o.stderr.contains("No such file or directory"), "{o:?}");
        k.ok(&["exec", &pod, "--", "touch", "/tmp/marker"]).await;
        assert_eq!(k.ok(&["exec", &pod, "--", "ls", "/tmp"]).await, "marker\n");

        // Identity and system.
        assert_eq!(exec("whoami; id -u; hostname; uname").await.stdout, format!("root\n0\n{pod}\nLinux\n"));
        assert_eq!(k.ok(&["exec", &pod, "--", "id"]).await, "uid=0(root) gid=0(root) groups=0(root)\n");
        assert_eq!(k.ok(&["exec", &pod, "--", "printenv", "COLOR"]).await, "blue\n");
        assert!(k.ok(&["exec", &pod, "--", "env"]).await.contains("COLOR=blue\n"));
        let ps = k.ok(&["exec", &pod, "--", "ps"]).await;
        assert!(ps.starts_with("PID") && ps.contains("sleep 3600"), "{ps}");
        let year = k.ok(&["exec", &pod, "--", "date", "+%Y"]).await;
        assert_eq!(year.trim().len(), 4, "{year}");
        assert_eq!(exec("sleep 0.1 && true && echo ok").await.stdout, "ok\n");

        // Exit codes.
        let o = exec("false").await;
        assert_eq!(o.code, Some(1), "{o:?}");
        let o = k.run(&["exec", &pod, "--", "nosuchcommand"]).await;
        assert_eq!(o.code, Some(127), "{o:?}");
        assert!(o.stderr.contains("command not found"), "{o:?}");
        let o = exec("grep -q absent /etc/hostname").await;
        assert_eq!(o.code, Some(1), "{o:?}");
        let o = exec("cat /missing 2>/dev/null || exit 7").await;
        assert_eq!((o.code, o.stderr.contains("missing")), (Some(7), false), "{o:?}");

        // Interactive: a script on stdin.
        let o =
            k.run_with_stdin(&["exec", "-i", &pod, "--", "sh"], "cd /etc\nls | grep host\necho done\n").await;
        assert_eq!(o.stdout, "hostname\nhosts\ndone\n", "{o:?}");
        k.ok(&["delete", "pod", &pod, "--grace-period=0", "--force"]).await;
    }
    sim.shutdown().await;
}
