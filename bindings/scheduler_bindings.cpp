// Scheduler bindings: the process-wide TaskScheduler, its stats, cancellation tokens, and small
// entry points that run real scheduler work so tests and benchmarks can observe it from Python.
#include "error_translation.hpp"
#include "sabot/cancellation.hpp"
#include "sabot/morsel.hpp"
#include "sabot/task_scheduler.hpp"
#include "sabot/topology.hpp"

#include <arrow/config.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace py = pybind11;
using sabot::CancellationToken;
using sabot::TaskScheduler;
using sabot::bindings::RunScheduled;

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
	return std::chrono::duration<double>(Clock::now() - start).count();
}

py::dict StatsToDict(const sabot::SchedulerStats &stats) {
	py::dict d;
	d["threads"] = stats.threads;
	d["numa_nodes"] = stats.numa_nodes;
	d["numa_binding"] = stats.numa_binding;
	d["pinned"] = stats.pinned;
	d["topology"] = stats.topology_source;
	d["hwloc"] = sabot::HwlocCompiledIn();
	d["hwloc_version"] = sabot::HwlocVersion();
	d["usable_cores"] = sabot::Topology::UsableCores();
	d["morsels_executed"] = stats.morsels_executed;
	d["morsels_stolen"] = stats.morsels_stolen;
	d["tasks_executed"] = stats.tasks_executed;
	d["task_errors"] = stats.task_errors;
	d["parallel_for_calls"] = stats.parallel_for_calls;
	py::list workers;
	double busy_total = 0;
	for (const auto &w : stats.workers) {
		py::dict wd;
		wd["worker_id"] = w.worker_id;
		wd["tid"] = w.tid;
		wd["cpu"] = w.cpu < 0 ? py::object(py::none()) : py::object(py::int_(w.cpu));
		wd["numa_node"] = w.numa_node;
		wd["morsels_executed"] = w.morsels_executed;
		wd["morsels_stolen"] = w.morsels_stolen;
		wd["steals_local"] = w.steals_local;
		wd["steals_remote"] = w.steals_remote;
		wd["tasks_executed"] = w.tasks_executed;
		wd["busy_seconds"] = static_cast<double>(w.busy_ns) / 1e9;
		busy_total += static_cast<double>(w.busy_ns) / 1e9;
		workers.append(wd);
	}
	d["workers"] = workers;
	d["busy_seconds"] = busy_total;
	d["arrow_version"] = arrow::GetBuildInfo().version_string;
	return d;
}

// Busy-wait `ns` nanoseconds: a stand-in for CPU work of known length.
void Spin(int64_t ns) {
	if (ns <= 0) {
		return;
	}
	const auto until = Clock::now() + std::chrono::nanoseconds(ns);
	while (Clock::now() < until) {
	}
}

void CheckCount(int64_t n, const char *what) {
	if (n < 0) {
		throw std::invalid_argument(std::string(what) + " must be >= 0, got " + std::to_string(n));
	}
}

} // namespace

void register_scheduler(py::module_ &m) {
	py::class_<CancellationToken, std::shared_ptr<CancellationToken>>(
	    m, "CancellationToken", "Cancels a running native job: call cancel() from any thread.")
	    .def(py::init<>())
	    .def("cancel", &CancellationToken::Cancel, "Request cancellation; running morsels finish, the rest are skipped.")
	    .def("reset", &CancellationToken::Reset, "Clear the flag to reuse the token.")
	    .def_property_readonly("cancelled", &CancellationToken::IsCancelled, "True once cancel() was called.");

	m.def(
	    "get_stats", [] { return StatsToDict(TaskScheduler::Global().GetStats()); },
	    "Scheduler state and counters (cumulative since the process started).");
	m.def(
	    "num_threads", [] { return TaskScheduler::Global().NumThreads(); }, "Worker threads of the native pool.");
	m.def(
	    "max_threads", [] { return TaskScheduler::MaxThreads(); }, "Largest thread count set_threads accepts.");
	m.def(
	    "usable_cores", [] { return sabot::Topology::UsableCores(); },
	    "CPUs this process may use: affinity mask capped by the cgroup CPU quota.");
	m.def(
	    "set_threads",
	    [](int threads) {
		    py::gil_scoped_release release;
		    TaskScheduler::Global().SetThreads(threads);
	    },
	    py::arg("threads"), "Resize the native pool (1..max_threads()); waits for running jobs.");
	m.def(
	    "worker_thread_ids", [] { return TaskScheduler::Global().WorkerThreadIds(); },
	    "Linux thread ids (TIDs) of the workers, in worker-id order.");
	m.def(
	    "victim_order", [](int worker) { return TaskScheduler::Global().VictimOrder(worker); }, py::arg("worker"),
	    "Order in which a worker tries others when stealing (same NUMA node first).");

	m.def(
	    "rows_per_morsel",
	    [](int64_t num_rows, int64_t total_bytes, int64_t morsel_bytes) {
		    return sabot::RowsPerMorsel(num_rows, total_bytes, morsel_bytes);
	    },
	    py::arg("num_rows"), py::arg("total_bytes"), py::arg("morsel_bytes") = sabot::DEFAULT_MORSEL_BYTES,
	    "Rows per morsel so one morsel covers about morsel_bytes of the input's buffers.");
	m.def(
	    "plan_morsels",
	    [](int64_t num_rows, int64_t total_bytes, int64_t morsel_bytes) {
		    std::vector<std::pair<int64_t, int64_t>> out;
		    for (const auto &morsel : sabot::PlanMorsels(num_rows, total_bytes, morsel_bytes)) {
			    out.emplace_back(morsel.offset, morsel.length);
		    }
		    return out;
	    },
	    py::arg("num_rows"), py::arg("total_bytes"), py::arg("morsel_bytes") = sabot::DEFAULT_MORSEL_BYTES,
	    "[(offset, length), ...] morsels of about morsel_bytes each.");

	// Entry points that run real scheduler work (tests, benchmarks). All release the GIL.
	m.def(
	    "run_empty",
	    [](int64_t num_morsels) {
		    CheckCount(num_morsels, "num_morsels");
		    return RunScheduled([&] {
			    const auto start = Clock::now();
			    TaskScheduler::Global().ParallelFor(static_cast<size_t>(num_morsels), [](size_t, int) {});
			    return Seconds(start);
		    });
	    },
	    py::arg("num_morsels"), "Run num_morsels empty morsels; returns the wall time in seconds.");
	m.def(
	    "run_spin",
	    [](int64_t num_morsels, int64_t spin_ns, std::shared_ptr<CancellationToken> token) {
		    CheckCount(num_morsels, "num_morsels");
		    CheckCount(spin_ns, "spin_ns");
		    return RunScheduled([&] {
			    const auto start = Clock::now();
			    TaskScheduler::Global().ParallelFor(
			        static_cast<size_t>(num_morsels), [spin_ns](size_t, int) { Spin(spin_ns); }, token.get());
			    return Seconds(start);
		    });
	    },
	    py::arg("num_morsels"), py::arg("spin_ns"), py::arg("token") = nullptr,
	    "Run morsels that each busy-wait spin_ns nanoseconds; returns the wall time in seconds. "
	    "Raises sabot.errors.CancelledError if token is cancelled first.");
	m.def(
	    "run_failing",
	    [](int64_t num_morsels, int64_t fail_at) {
		    CheckCount(num_morsels, "num_morsels");
		    RunScheduled([&] {
			    TaskScheduler::Global().ParallelFor(static_cast<size_t>(num_morsels), [fail_at](size_t i, int) {
				    if (static_cast<int64_t>(i) == fail_at) {
					    throw std::runtime_error("morsel " + std::to_string(i) + " failed on purpose");
				    }
			    });
		    });
	    },
	    py::arg("num_morsels"), py::arg("fail_at"),
	    "Run morsels of which number fail_at throws; raises sabot.errors.SchedulerError with its message.");
	m.def(
	    "scan_sum",
	    [](const py::buffer &data, int64_t morsel_bytes) {
		    // Zero-copy view of the caller's buffer (numpy array, bytes-like of int64).
		    py::buffer_info info = data.request();
		    if (info.ndim != 1 || info.itemsize != 8 || (info.format != "l" && info.format != "q") ||
		        (info.size > 1 && info.strides[0] != 8)) {
			    throw std::invalid_argument("scan_sum needs a 1-D contiguous int64 buffer, got format '" +
			                                info.format + "' with " + std::to_string(info.ndim) + " dimension(s)");
		    }
		    const auto *values = static_cast<const int64_t *>(info.ptr);
		    const int64_t rows = info.size;
		    return RunScheduled([&] {
			    auto &sched = TaskScheduler::Global();
			    const sabot::MorselPlan plan(rows, rows * 8, morsel_bytes);
			    // Unsigned sums: wrap-around is defined, and equals numpy's int64 wrap.
			    struct alignas(64) Partial {
				    uint64_t sum = 0;
			    };
			    std::vector<Partial> partials(static_cast<size_t>(sched.NumThreads()));
			    sched.ParallelFor(static_cast<size_t>(plan.NumMorsels()), [&](size_t i, int worker) {
				    if (static_cast<size_t>(worker) >= partials.size()) {
					    throw std::runtime_error("the pool was resized while scan_sum was running");
				    }
				    const auto morsel = plan.Get(static_cast<int64_t>(i));
				    uint64_t sum = 0;
				    for (int64_t r = morsel.offset; r < morsel.offset + morsel.length; r++) {
					    sum += static_cast<uint64_t>(values[r]);
				    }
				    partials[static_cast<size_t>(worker)].sum += sum;
			    });
			    uint64_t total = 0;
			    for (const auto &p : partials) {
				    total += p.sum;
			    }
			    return std::make_pair(static_cast<int64_t>(total), plan.NumMorsels());
		    });
	    },
	    py::arg("data"), py::arg("morsel_bytes") = sabot::DEFAULT_MORSEL_BYTES,
	    "Sum a 1-D int64 buffer in morsels of morsel_bytes, without copying it; returns "
	    "(sum, number_of_morsels). Integer overflow wraps.");
	m.def(
	    "run_count",
	    [](int64_t num_morsels) {
		    CheckCount(num_morsels, "num_morsels");
		    return RunScheduled([&] {
			    auto &sched = TaskScheduler::Global();
			    // Per-worker partial states indexed by worker_id, merged at the end.
			    struct alignas(64) Partial {
				    int64_t count = 0;
				    int64_t sum = 0;
			    };
			    std::vector<Partial> partials(static_cast<size_t>(sched.NumThreads()));
			    sched.ParallelFor(static_cast<size_t>(num_morsels), [&](size_t i, int worker) {
				    if (static_cast<size_t>(worker) >= partials.size()) {
					    throw std::runtime_error("the pool was resized while run_count was running");
				    }
				    partials[static_cast<size_t>(worker)].count++;
				    partials[static_cast<size_t>(worker)].sum += static_cast<int64_t>(i);
			    });
			    std::vector<std::pair<int64_t, int64_t>> out;
			    for (const auto &p : partials) {
				    out.emplace_back(p.count, p.sum);
			    }
			    return out;
		    });
	    },
	    py::arg("num_morsels"),
	    "Run num_morsels morsels, each adding its index to its worker's partial state; returns "
	    "[(count, sum_of_indices)] per worker id.");
}
