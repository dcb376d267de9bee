# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_harness_global_optspecs
    string join \n h/help V/version
end

function __fish_harness_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_harness_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_harness_using_subcommand
    set -l cmd (__fish_harness_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c harness -n "__fish_harness_needs_command" -s h -l help -d 'Print help'
complete -c harness -n "__fish_harness_needs_command" -s V -l version -d 'Print version'
complete -c harness -n "__fish_harness_needs_command" -f -a "run" -d 'Run a scenario against its syncers under test, one after another'
complete -c harness -n "__fish_harness_needs_command" -f -a "compare" -d 'Compare two sets of runs (results folders or run.json files; folders are searched recursively): every gate metric, B/A, noise, a verdict each. Exit 1 on a regression'
complete -c harness -n "__fish_harness_needs_command" -f -a "ci" -d 'Regression gate: build the baseline revision\'s syncer, run the CI scenarios A B A B with this build\'s syncer, compare. Exit 1 on a regression, 0 when the baseline cannot be built (with a SKIP line saying why)'
complete -c harness -n "__fish_harness_needs_command" -f -a "report" -d 'Capacity planning report (report.md + SVG plots) from results folders, tune.json, sweep.json, watchcost.json and history.csv (folders are searched recursively)'
complete -c harness -n "__fish_harness_needs_command" -f -a "watchcost" -d 'Kernel memory pinned per inotify watch and per fanotify filesystem mark, measured (slab after drop_caches, held vs released); writes watchcost.json. Needs root'
complete -c harness -n "__fish_harness_needs_command" -f -a "limits" -d 'Quick, read-only capacity answer for a real tree: watches needed (and held already), their kernel memory, the queue for a rate and stall, /etc/sysctl.d/ lines'
complete -c harness -n "__fish_harness_needs_command" -f -a "tune" -d 'Size fs.inotify.max_queued_events: run the scenario over a grid of queue sizes x storm rates, report per rate the smallest queue with no overflow and the stall each queue tolerates, and check that prediction by SIGSTOPping the syncer mid-storm'
complete -c harness -n "__fish_harness_needs_command" -f -a "sweep" -d 'Open-loop rate sweep: per syncer, step every phase\'s rate up until p99 misses the SLO twice in a row; write the latency-vs-rate curve, its knee and the sustainable ops/s'
complete -c harness -n "__fish_harness_needs_command" -f -a "chaos" -d 'Random-operation storms: seeded mixes of ordinary file operations run live under our syncer (each backend x target), every replica required to equal SOURCE exactly. Exit 1 when a case fails (its seed and replay command are printed)'
complete -c harness -n "__fish_harness_needs_command" -f -a "list" -d 'List scenarios with their descriptions'
complete -c harness -n "__fish_harness_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c harness -n "__fish_harness_using_subcommand run" -l sut -d 'Only this syncer (label or kind); repeatable; selects syncers that are off by default' -r
complete -c harness -n "__fish_harness_using_subcommand run" -l repeat -d 'Repeats per syncer (overrides the scenario\'s `repeats`)' -r
complete -c harness -n "__fish_harness_using_subcommand run" -l out -d 'Results root; a folder <date>-<host>-<scenario> is written inside' -r -F
complete -c harness -n "__fish_harness_using_subcommand run" -l workdir -d 'Where sources and replicas live (default: a new temp dir)' -r -F
complete -c harness -n "__fish_harness_using_subcommand run" -l keep -d 'Keep the work dir afterwards'
complete -c harness -n "__fish_harness_using_subcommand run" -s h -l help -d 'Print help'
complete -c harness -n "__fish_harness_using_subcommand run" -s V -l version -d 'Print version'
complete -c harness -n "__fish_harness_using_subcommand compare" -l sut -d 'Which syncer\'s runs to compare (its label in the results)' -r
complete -c harness -n "__fish_harness_using_subcommand compare" -l json -d 'Also write the report as JSON here' -r -F
complete -c harness -n "__fish_harness_using_subcommand compare" -s h -l help -d 'Print help'
complete -c harness -n "__fish_harness_using_subcommand compare" -s V -l version -d 'Print version'
complete -c harness -n "__fish_harness_using_subcommand ci" -l baseline -d 'Baseline revision (default: the merge base with main, or HEAD~1 on main)' -r
complete -c harness -n "__fish_harness_using_subcommand ci" -l scenarios -d 'Comma-separated scenario files (default: scenarios/ci-*.toml)' -r -F
complete -c harness -n "__fish_harness_using_subcommand ci" -l pairs -d 'A/B pairs per scenario (at least 3; from 6 the rank test decides timing metrics)' -r
complete -c harness -n "__fish_harness_using_subcommand ci" -l out -d 'Where runs, report.md and report.json go (runs/ inside is replaced)' -r -F
complete -c harness -n "__fish_harness_using_subcommand ci" -l sut -d 'Which syncer entry of the scenarios to run' -r
complete -c harness -n "__fish_harness_using_subcommand ci" -l baseline-bin -d 'Testing: the baseline\'s syncer binary (nothing is built for it)' -r -F
complete -c harness -n "__fish_harness_using_subcommand ci" -l candidate-bin -d 'Testing: the candidate\'s syncer binary (default: build this tree\'s)' -r -F
complete -c harness -n "__fish_harness_using_subcommand ci" -l candidate-args -d 'Testing: extra syncer arguments for the candidate only, e.g. "--batch-delay 2000" to check that the gate catches an injected regression' -r
complete -c harness -n "__fish_harness_using_subcommand ci" -l record -d 'Append every run\'s floor ratio and latency to results/history.csv'
complete -c harness -n "__fish_harness_using_subcommand ci" -s h -l help -d 'Print help'
complete -c harness -n "__fish_harness_using_subcommand ci" -s V -l version -d 'Print version'
complete -c harness -n "__fish_harness_using_subcommand report" -l out -d 'Where report.md and the plots go' -r -F
complete -c harness -n "__fish_harness_using_subcommand report" -l slo-ms -d 'p99 objective for "sustainable ops/s" (default: the sweep\'s, else 1000 ms)' -r
complete -c harness -n "__fish_harness_using_subcommand report" -l stall-budget-ms -d 'How long the syncer may stop reading events; sizes max_queued_events' -r
complete -c harness -n "__fish_harness_using_subcommand report" -s h -l help -d 'Print help'
complete -c harness -n "__fish_harness_using_subcommand report" -s V -l version -d 'Print version'
complete -c harness -n "__fish_harness_using_subcommand watchcost" -l dirs -d 'Directories to watch' -r
complete -c harness -n "__fish_harness_using_subcommand watchcost" -l rounds -d 'Held/released rounds per mechanism (median and spread are reported)' -r
complete -c harness -n "__fish_harness_using_subcommand watchcost" -l out -d 'Folder for watchcost.json and README.md (default results/<date>-<host>-watchcost)' -r -F
complete -c harness -n "__fish_harness_using_subcommand watchcost" -l dir -d 'Where the directories are made; its filesystem decides what a watch pins (default: the temp dir, ext4 here, where a watch keeps an otherwise reclaimable inode)' -r -F
complete -c harness -n "__fish_harness_using_subcommand watchcost" -s h -l help -d 'Print help'
complete -c harness -n "__fish_harness_using_subcommand watchcost" -s V -l version -d 'Print version'
complete -c harness -n "__fish_harness_using_subcommand limits" -l tree -r -F
complete -c harness -n "__fish_harness_using_subcommand limits" -l rate -d 'Storm rate, file operations per second' -r
complete -c harness -n "__fish_harness_using_subcommand limits" -l stall-ms -d 'How long the syncer may stop reading without an overflow, ms' -r
complete -c harness -n "__fish_harness_using_subcommand limits" -l events-per-op -d 'Queued events per file operation' -r
complete -c harness -n "__fish_harness_using_subcommand limits" -l cost -d 'watchcost.json (default: the newest results/*/watchcost.json)' -r -F
complete -c harness -n "__fish_harness_using_subcommand limits" -s h -l help -d 'Print help'
complete -c harness -n "__fish_harness_using_subcommand limits" -s V -l version -d 'Print version'
complete -c harness -n "__fish_harness_using_subcommand tune" -l queue -d 'max_queued_events values, comma-separated (default 256,1024,4096,16384,65536)' -r
complete -c harness -n "__fish_harness_using_subcommand tune" -l rate -d 'Offered storm rates in ops/s, comma-separated (default 500,2000,8000,32000)' -r
complete -c harness -n "__fish_harness_using_subcommand tune" -l sut -d 'Only this syncer (label or kind); repeatable. Our syncer is pinned to --backend inotify' -r
complete -c harness -n "__fish_harness_using_subcommand tune" -l out -d 'Results root; a folder <date>-<host>-tune-<scenario> is written inside' -r -F
complete -c harness -n "__fish_harness_using_subcommand tune" -l workdir -d 'Where sources live during the runs (default /dev/shm, else the temp dir)' -r -F
complete -c harness -n "__fish_harness_using_subcommand tune" -l stall-queue -d 'The queue of the cell to stall-check (with --stall-rate; default: the clean cell whose predicted stall is nearest 1 s)' -r
complete -c harness -n "__fish_harness_using_subcommand tune" -l stall-rate -d 'The rate of the cell to stall-check (with --stall-queue)' -r
complete -c harness -n "__fish_harness_using_subcommand tune" -l no-stall-check -d 'Skip the SIGSTOP checks of the predicted stall budget'
complete -c harness -n "__fish_harness_using_subcommand tune" -s h -l help -d 'Print help'
complete -c harness -n "__fish_harness_using_subcommand tune" -s V -l version -d 'Print version'
complete -c harness -n "__fish_harness_using_subcommand sweep" -l rate -d 'Offered rates in ops/s, comma-separated (default 1000 to 48000)' -r
complete -c harness -n "__fish_harness_using_subcommand sweep" -l sut -d 'Only this syncer (label or kind); repeatable' -r
complete -c harness -n "__fish_harness_using_subcommand sweep" -l slo-ms -d 'The p99 objective in ms (default: the scenario\'s [slo] p99_ms)' -r
complete -c harness -n "__fish_harness_using_subcommand sweep" -l out -d 'Results root; a folder <date>-<host>-sweep-<scenario> is written inside' -r -F
complete -c harness -n "__fish_harness_using_subcommand sweep" -l workdir -d 'Where sources live during the runs (default /dev/shm, else the temp dir)' -r -F
complete -c harness -n "__fish_harness_using_subcommand sweep" -s h -l help -d 'Print help'
complete -c harness -n "__fish_harness_using_subcommand sweep" -s V -l version -d 'Print version'
complete -c harness -n "__fish_harness_using_subcommand chaos" -l seeds -d 'Seeds 1..=N' -r
complete -c harness -n "__fish_harness_using_subcommand chaos" -l seed-range -d 'Seeds A..B (B excluded), so long campaigns can be split, resumed and merged' -r
complete -c harness -n "__fish_harness_using_subcommand chaos" -l ops -d 'Live operations per seed' -r
complete -c harness -n "__fish_harness_using_subcommand chaos" -l setup-ops -d 'Operations that build the tree before the syncer starts' -r
complete -c harness -n "__fish_harness_using_subcommand chaos" -l pause-us -d 'Mean pause between operations, microseconds (bursts have none)' -r
complete -c harness -n "__fish_harness_using_subcommand chaos" -l backend -d 'Comma-separated: inotify, fanotify' -r
complete -c harness -n "__fish_harness_using_subcommand chaos" -l target -d 'Comma-separated: local (a directory), rsync (a real rsync daemon on loopback)' -r
complete -c harness -n "__fish_harness_using_subcommand chaos" -l jobs -d 'Cases run at once' -r
complete -c harness -n "__fish_harness_using_subcommand chaos" -l converge-s -d 'Seconds after the last operation within which the replica must equal SOURCE' -r
complete -c harness -n "__fish_harness_using_subcommand chaos" -l out -d 'Results folder: runs.csv (appended as cases finish), summary.md, chaos.json, failures/' -r -F
complete -c harness -n "__fish_harness_using_subcommand chaos" -l workdir -d 'Where trees live while cases run (default /dev/shm, else the temp dir)' -r -F
complete -c harness -n "__fish_harness_using_subcommand chaos" -l shrink-trials -d 'Most cases run while shrinking one failure' -r
complete -c harness -n "__fish_harness_using_subcommand chaos" -l shrink-tries -d 'Runs of each shrink candidate (it fails if any run fails): >1 for flaky failures' -r
complete -c harness -n "__fish_harness_using_subcommand chaos" -l replay -d 'Replay this op log (e.g. failures/*/minimal.ops) instead of generating seeds' -r -F
complete -c harness -n "__fish_harness_using_subcommand chaos" -l syncer-args -d 'Extra arguments for the syncer, e.g. "--batch-delay 50"' -r
complete -c harness -n "__fish_harness_using_subcommand chaos" -l merge -d 'Only regenerate summary.md from the runs.csv of these folders (merge campaigns)' -r -F
complete -c harness -n "__fish_harness_using_subcommand chaos" -l resume -d 'Skip the cases runs.csv in --out already holds (resume a campaign)'
complete -c harness -n "__fish_harness_using_subcommand chaos" -l shrink -d 'Shrink each failing case to a short op log (delta debugging) in failures/'
complete -c harness -n "__fish_harness_using_subcommand chaos" -l print-ops -d 'Print the op log of --seeds/--seed-range\'s first seed and exit (nothing is run)'
complete -c harness -n "__fish_harness_using_subcommand chaos" -s h -l help -d 'Print help'
complete -c harness -n "__fish_harness_using_subcommand chaos" -s V -l version -d 'Print version'
complete -c harness -n "__fish_harness_using_subcommand list" -s h -l help -d 'Print help'
complete -c harness -n "__fish_harness_using_subcommand list" -s V -l version -d 'Print version'
complete -c harness -n "__fish_harness_using_subcommand help; and not __fish_seen_subcommand_from run compare ci report watchcost limits tune sweep chaos list help" -f -a "run" -d 'Run a scenario against its syncers under test, one after another'
complete -c harness -n "__fish_harness_using_subcommand help; and not __fish_seen_subcommand_from run compare ci report watchcost limits tune sweep chaos list help" -f -a "compare" -d 'Compare two sets of runs (results folders or run.json files; folders are searched recursively): every gate metric, B/A, noise, a verdict each. Exit 1 on a regression'
complete -c harness -n "__fish_harness_using_subcommand help; and not __fish_seen_subcommand_from run compare ci report watchcost limits tune sweep chaos list help" -f -a "ci" -d 'Regression gate: build the baseline revision\'s syncer, run the CI scenarios A B A B with this build\'s syncer, compare. Exit 1 on a regression, 0 when the baseline cannot be built (with a SKIP line saying why)'
complete -c harness -n "__fish_harness_using_subcommand help; and not __fish_seen_subcommand_from run compare ci report watchcost limits tune sweep chaos list help" -f -a "report" -d 'Capacity planning report (report.md + SVG plots) from results folders, tune.json, sweep.json, watchcost.json and history.csv (folders are searched recursively)'
complete -c harness -n "__fish_harness_using_subcommand help; and not __fish_seen_subcommand_from run compare ci report watchcost limits tune sweep chaos list help" -f -a "watchcost" -d 'Kernel memory pinned per inotify watch and per fanotify filesystem mark, measured (slab after drop_caches, held vs released); writes watchcost.json. Needs root'
complete -c harness -n "__fish_harness_using_subcommand help; and not __fish_seen_subcommand_from run compare ci report watchcost limits tune sweep chaos list help" -f -a "limits" -d 'Quick, read-only capacity answer for a real tree: watches needed (and held already), their kernel memory, the queue for a rate and stall, /etc/sysctl.d/ lines'
complete -c harness -n "__fish_harness_using_subcommand help; and not __fish_seen_subcommand_from run compare ci report watchcost limits tune sweep chaos list help" -f -a "tune" -d 'Size fs.inotify.max_queued_events: run the scenario over a grid of queue sizes x storm rates, report per rate the smallest queue with no overflow and the stall each queue tolerates, and check that prediction by SIGSTOPping the syncer mid-storm'
complete -c harness -n "__fish_harness_using_subcommand help; and not __fish_seen_subcommand_from run compare ci report watchcost limits tune sweep chaos list help" -f -a "sweep" -d 'Open-loop rate sweep: per syncer, step every phase\'s rate up until p99 misses the SLO twice in a row; write the latency-vs-rate curve, its knee and the sustainable ops/s'
complete -c harness -n "__fish_harness_using_subcommand help; and not __fish_seen_subcommand_from run compare ci report watchcost limits tune sweep chaos list help" -f -a "chaos" -d 'Random-operation storms: seeded mixes of ordinary file operations run live under our syncer (each backend x target), every replica required to equal SOURCE exactly. Exit 1 when a case fails (its seed and replay command are printed)'
complete -c harness -n "__fish_harness_using_subcommand help; and not __fish_seen_subcommand_from run compare ci report watchcost limits tune sweep chaos list help" -f -a "list" -d 'List scenarios with their descriptions'
complete -c harness -n "__fish_harness_using_subcommand help; and not __fish_seen_subcommand_from run compare ci report watchcost limits tune sweep chaos list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
