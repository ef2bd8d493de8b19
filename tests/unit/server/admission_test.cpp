// AdmissionControl: all-or-nothing reservations up to --max-waiting; one request always fits.
#include "server/admission.h"

#include <gtest/gtest.h>

namespace anvil::server {
namespace {

TEST(AdmissionControl, BoundsTheWaitingRequests) {
  AdmissionControl admission(3);
  EXPECT_TRUE(admission.try_admit(2));
  EXPECT_FALSE(admission.try_admit(2));  // all or nothing: 4 > 3
  EXPECT_TRUE(admission.try_admit(1));
  EXPECT_FALSE(admission.try_admit(1));
  EXPECT_EQ(admission.waiting(), 3);
  admission.release(2);
  EXPECT_TRUE(admission.try_admit(1));
  EXPECT_EQ(admission.waiting(), 2);
}

TEST(AdmissionControl, OneRequestAloneAlwaysFits) {
  AdmissionControl admission(2);
  EXPECT_TRUE(admission.try_admit(10));  // n = 10 on an idle server: refusing would refuse it forever
  EXPECT_FALSE(admission.try_admit(1));
  admission.release(10);
  EXPECT_EQ(admission.waiting(), 0);
}

}  // namespace
}  // namespace anvil::server
