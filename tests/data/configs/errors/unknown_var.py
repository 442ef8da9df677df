a = 1
work_dir = '{{ fileDirnam }}/x'
