-- AlterTable
ALTER TABLE "background_jobs" ADD COLUMN     "finished_at" TIMESTAMP(3),
ADD COLUMN     "started_at" TIMESTAMP(3);
