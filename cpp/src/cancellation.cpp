#include "sabot/cancellation.hpp"

namespace sabot {

namespace {
thread_local const ScopedInterruptCheck *tl_interrupt_check = nullptr;
} // namespace

ScopedInterruptCheck::ScopedInterruptCheck(std::function<bool()> check)
    : check_(std::move(check)), previous_(tl_interrupt_check) {
	tl_interrupt_check = this;
}

ScopedInterruptCheck::~ScopedInterruptCheck() {
	tl_interrupt_check = previous_;
}

const std::function<bool()> *ScopedInterruptCheck::Current() {
	return tl_interrupt_check && tl_interrupt_check->check_ ? &tl_interrupt_check->check_ : nullptr;
}

} // namespace sabot
